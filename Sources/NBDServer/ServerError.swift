/// Errors of the server engine (setup, listening); per-connection problems are logged,
/// never thrown to the caller.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let addressInUse = Code(name: "address in use")
        public static let cannotListen = Code(name: "cannot listen")
        public static let badConfiguration = Code(name: "bad configuration")
        public static let socketActivation = Code(name: "socket activation")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    public var errno: Int32?
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, errno: Int32? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.errno = errno
        self.file = file
        self.line = line
    }

    public var description: String { message }
}
