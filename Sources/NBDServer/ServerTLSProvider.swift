import NBDTLS

/// The seam between the server engine and TLS (implemented in `NBDServer/TLS/`).
///
/// The engine calls `acceptHandshake` right after it has sent the plaintext ACK to
/// NBD_OPT_STARTTLS, on the connection's socket, having read nothing past that option.
/// The provider runs the TLS handshake (and any authorisation check) and returns the stream
/// every later byte of the connection goes through.
public protocol ServerTLSProvider: Sendable {
    /// Runs the server side of the TLS handshake on `socket`.
    /// - Returns: the encrypted stream; `refusal` set when the peer authenticated but is not
    ///   authorised (the engine then answers the following options with NBD_REP_ERR_POLICY
    ///   carrying that message, and closes).
    /// - Throws: when the handshake fails; the engine then drops the connection (the provider
    ///   should already have sent an alert).
    func acceptHandshake(on socket: SocketStream, peerAddress: String) throws -> ServerTLSOutcome

    /// Re-reads certificates/keys (SIGHUP). New handshakes use the new credentials;
    /// established sessions are unaffected. Throws when the new credentials are unusable
    /// (the old ones stay in force).
    func reloadCredentials() throws
}

/// What a finished TLS handshake produced.
public struct ServerTLSOutcome: Sendable {
    /// The encrypted stream bound to the socket; owns it from now on.
    public var stream: any ByteStream
    /// Who the peer proved to be (x509 distinguished name or PSK identity), for logs.
    public var peerIdentity: String?
    /// Authorisation denied, with the message to send (NBD_REP_ERR_POLICY).
    public var refusal: String?

    public init(stream: any ByteStream, peerIdentity: String? = nil, refusal: String? = nil) {
        self.stream = stream
        self.peerIdentity = peerIdentity
        self.refusal = refusal
    }
}
