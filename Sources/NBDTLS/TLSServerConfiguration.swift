/// How a server speaks TLS: which credentials, whether clients must present a certificate,
/// which client DNs are authorized, and the GnuTLS priority string.
public struct TLSServerConfiguration: Sendable, Equatable {
    public enum Credentials: Sendable, Equatable {
        /// A directory in QEMU's layout: ca-cert.pem, server-cert.pem, server-key.pem,
        /// optional ca-crl.pem and dh-params.pem.
        case x509(directory: String)
        /// A psktool key file (`identity:hexkey` per line).
        case psk(keyFile: String)
    }

    public var credentials: Credentials
    /// Request and verify a client certificate against the CA (x509 only). Default on, as QEMU.
    public var verifyPeer: Bool
    /// Client certificate DNs allowed in; empty allows every verified client.
    public var authorizedDNs: DNAuthorizationList
    /// GnuTLS priority string; nil picks `TLSPriority.default(for:)`.
    public var priority: String?
    /// Seconds a client may take to finish the handshake.
    public var handshakeTimeout: Double

    public init(credentials: Credentials, verifyPeer: Bool = true, authorizedDNs: DNAuthorizationList = DNAuthorizationList(),
                priority: String? = nil, handshakeTimeout: Double = 10) {
        self.credentials = credentials
        self.verifyPeer = verifyPeer
        self.authorizedDNs = authorizedDNs
        self.priority = priority
        self.handshakeTimeout = handshakeTimeout
    }
}

/// GnuTLS priority strings used when none is configured.
public enum TLSPriority {
    /// GnuTLS's defaults (TLS 1.2 and 1.3).
    public static let x509 = "NORMAL"
    /// PSK key exchanges enabled, AES-GCM preferred: GnuTLS otherwise picks CHACHA20-POLY1305
    /// for TLS 1.3 PSK, which runs several times slower on AES-NI hardware. Both ends use it.
    public static let psk = "NORMAL:-CHACHA20-POLY1305:+ECDHE-PSK:+DHE-PSK:+PSK"

    static func resolve(_ configured: String?, psk usesPSK: Bool) -> String {
        configured ?? (usesPSK ? psk : x509)
    }
}
