/// How a server treats TLS on a connection (docs/protocol.md §3.4). Fixed for the connection's life.
public enum ServerTLSMode: Hashable, Sendable {
    /// NOTLS: STARTTLS is refused (`ERR_POLICY`, or `ERR_UNSUP` when the build has no TLS at all).
    case off
    /// SELECTIVETLS: TLS offered; exports marked `tlsOnly` need it, others work in plaintext.
    case on
    /// FORCEDTLS: every option except STARTTLS and ABORT is refused until TLS is up.
    case require
}
