/// The one error type of the storage layer. The NBD server maps `code` to an NBD errno in
/// exactly one place; `errno` keeps the host's value for logs.
public struct BlockDeviceError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public static let io = Code(name: "I/O error")
        public static let noSpace = Code(name: "no space")
        public static let readOnly = Code(name: "read-only")
        public static let invalidArgument = Code(name: "invalid argument")
        public static let outOfRange = Code(name: "out of range")
        /// FAST_ZERO could not be honoured quickly.
        public static let notSupported = Code(name: "not supported")
        public static let locked = Code(name: "locked by another process")
        public static let notFound = Code(name: "not found")
        public static let badFormat = Code(name: "bad image format")
        public static let unsupportedFeature = Code(name: "unsupported feature")
        public static let shutdown = Code(name: "shutting down")
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
