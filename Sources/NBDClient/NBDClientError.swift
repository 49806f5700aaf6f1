import NBDProtocol

/// The one error type of the NBD client: a growable `code`, a human message, and where the
/// server said something, its own words (option error text, or the message of an error chunk).
public struct NBDClientError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// The URI could not be parsed or is inconsistent.
        public static let invalidURI = Code(name: "invalid URI")
        /// Could not reach the server (DNS, connect, socket path).
        public static let connectionFailed = Code(name: "connection failed")
        /// The handshake failed: option errors, policy refusals, unknown export.
        public static let negotiationFailed = Code(name: "negotiation failed")
        /// TLS was required but could not be used, or the TLS layer failed.
        public static let tls = Code(name: "TLS failure")
        /// The server broke the protocol; the connection was dropped.
        public static let protocolViolation = Code(name: "protocol violation")
        /// The server answered a command with an error (`errno` is set).
        public static let commandFailed = Code(name: "command failed")
        /// The export does not allow this (read-only, no TRIM…); nothing was sent.
        public static let notSupported = Code(name: "not supported by the export")
        /// Arguments outside the export or the negotiated limits; nothing was sent.
        public static let invalidArgument = Code(name: "invalid argument")
        /// The connection is closed or was lost.
        public static let disconnected = Code(name: "disconnected")
        /// Local I/O outside NBD (reading or writing a file in `copy`).
        public static let localIO = Code(name: "local I/O error")
        public var description: String { name }
    }

    public var code: Code
    public var message: String
    /// Text the server sent with an option error or an error chunk.
    public var serverMessage: String?
    /// The NBD error value of a failed command (Linux numbering, see `NBDErrno`).
    public var errno: UInt32?
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, serverMessage: String? = nil, errno: UInt32? = nil,
                file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.serverMessage = serverMessage
        self.errno = errno
        self.file = file
        self.line = line
    }

    public var description: String {
        if let serverMessage, !serverMessage.isEmpty, !message.contains(serverMessage) {
            return "\(message): \(serverMessage)"
        }
        return message
    }
}
