/// How a client speaks TLS: trust anchors and optional client certificate, or a PSK identity.
public struct TLSClientConfiguration: Sendable, Equatable {
    public enum Credentials: Sendable, Equatable {
        /// A directory in QEMU's layout (ca-cert.pem, optional client-cert.pem + client-key.pem,
        /// optional ca-crl.pem); nil trusts the system's CA store.
        case x509(directory: String?)
        /// A psktool key file and the identity to use from it.
        case psk(keyFile: String, username: String)
    }

    public var credentials: Credentials
    /// Verify the server certificate (chain, dates, hostname). Default on.
    public var verifyPeer: Bool
    /// The name to check the server certificate against instead of the connect host
    /// (QEMU/libnbd `tls-hostname`); needed for Unix sockets to get a name check at all.
    public var hostnameOverride: String?
    public var priority: String?
    public var handshakeTimeout: Double

    public init(credentials: Credentials, verifyPeer: Bool = true, hostnameOverride: String? = nil,
                priority: String? = nil, handshakeTimeout: Double = 30) {
        self.credentials = credentials
        self.verifyPeer = verifyPeer
        self.hostnameOverride = hostnameOverride
        self.priority = priority
        self.handshakeTimeout = handshakeTimeout
    }
}
