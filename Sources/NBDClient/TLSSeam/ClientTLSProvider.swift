import NBDTLS

/// Runs the client side of a TLS handshake after the server ACKed `NBD_OPT_STARTTLS`.
///
/// Implemented in `Sources/NBDClient/TLS/` (GnuTLS bound to the socket's fd). The engine calls
/// it exactly once, right after reading the 20-byte STARTTLS ACK and nothing more, and from then
/// on speaks only through the returned stream.
public protocol ClientTLSProvider: Sendable {
    /// Performs the handshake on `socket` and returns the encrypted stream.
    /// - Parameter hostname: the name to verify the server certificate against (`tls-hostname`,
    ///   else the TCP host); nil for Unix sockets without `tls-hostname`.
    /// - Throws: on handshake or verification failure; the connection is then closed.
    func startTLS(on socket: SocketStream, hostname: String?) throws -> any ByteStream
}

/// Builds a TLS provider from a URI's `tls-*` keys and user name.
///
/// `Sources/NBDClient/TLS/` makes `NBDURI` conform (`extension NBDURI: ClientTLSProviderFactory`);
/// `NBDConnection.connect(_ uri:)` uses that conformance when the URI asks for TLS.
public protocol ClientTLSProviderFactory {
    func makeTLSProvider() throws -> any ClientTLSProvider
}
