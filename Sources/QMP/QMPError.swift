/// Everything that can go wrong talking QMP. One struct with a code so callers can switch on
/// the kind while the message keeps the detail; QEMU's own error class and description are
/// kept verbatim when QEMU refused a command.
public struct QMPError: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The socket could not be opened.
        public static let connectionFailed = Code(rawValue: "connection failed")
        /// The peer closed the connection (QEMU exited or crashed).
        public static let connectionClosed = Code(rawValue: "connection closed")
        /// A line that is not JSON, or JSON that is not a QMP message.
        public static let malformedMessage = Code(rawValue: "malformed message")
        /// The first message was not a QMP greeting, or capabilities negotiation failed.
        public static let handshakeFailed = Code(rawValue: "handshake failed")
        /// QEMU answered a command with `{"error": …}`.
        public static let commandFailed = Code(rawValue: "command failed")
        /// No reply or event in time.
        public static let timedOut = Code(rawValue: "timed out")
        /// A write or read on the socket failed.
        public static let ioFailed = Code(rawValue: "I/O failed")
    }

    public var code: Code
    public var message: String
    /// QEMU's error class (`GenericError`, `CommandNotFound`, `DeviceNotFound`, …) for `.commandFailed`.
    public var errorClass: String?
    /// The command that failed or timed out, when there is one.
    public var command: String?

    public init(_ code: Code, _ message: String, errorClass: String? = nil, command: String? = nil) {
        self.code = code
        self.message = message
        self.errorClass = errorClass
        self.command = command
    }

    public var description: String {
        var text = "QMP \(code)"
        if let command { text += " (\(command))" }
        if let errorClass { text += ": \(errorClass)" }
        return text + ": " + message
    }
}
