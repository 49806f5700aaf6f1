/// Why a client handshake failed, in one sentence, with the server's own words when it sent any.
public struct ClientNegotiationError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// Our policy requires TLS and the server cannot or will not provide it.
        public static let tlsUnavailable = Kind(name: "TLS unavailable")
        /// The server requires TLS and we are not using it.
        public static let tlsRequiredByServer = Kind(name: "TLS required by server")
        /// The server broke the protocol (bad magic, wrong echo, bogus lengths…).
        public static let protocolViolation = Kind(name: "protocol violation")
        /// The export does not exist (ERR_UNKNOWN, or a closed connection after EXPORT_NAME).
        public static let exportNotFound = Kind(name: "export not found")
        /// The server is shutting down.
        public static let serverShutdown = Kind(name: "server shutting down")
        /// An option failed in a way we cannot work around.
        public static let optionFailed = Kind(name: "option failed")
        /// We asked for something the server or this handshake style cannot do.
        public static let unsupported = Kind(name: "unsupported")
        /// The connection ended in the middle of the handshake.
        public static let connectionClosed = Kind(name: "connection closed")
        /// The configuration cannot be sent (names too long, NUL bytes).
        public static let invalidConfiguration = Kind(name: "invalid configuration")
        public var description: String { name }
    }

    public var kind: Kind
    public var message: String
    public var option: NBDOption?
    public var replyType: NBDReplyType?
    /// The text of the server's error reply, if it sent one.
    public var serverMessage: String?

    public init(_ kind: Kind, _ message: String, option: NBDOption? = nil, replyType: NBDReplyType? = nil,
                serverMessage: String? = nil) {
        self.kind = kind
        self.message = message
        self.option = option
        self.replyType = replyType
        self.serverMessage = serverMessage
    }

    public var description: String {
        if let serverMessage, !serverMessage.isEmpty { return "\(message) (server said: \(serverMessage))" }
        return message
    }
}
