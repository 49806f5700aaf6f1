#if canImport(Glibc)
import Glibc
#endif
import CGnuTLS

/// Client-side TLS: credentials loaded once from a `TLSClientConfiguration`; `connect`
/// runs the handshake on a socket right after the server's STARTTLS ACK.
public final class TLSClientContext: @unchecked Sendable {
    public let configuration: TLSClientConfiguration
    private let certificates: CertificateCredentials?
    private let psk: PSKClientCredentials?
    private let priority: PriorityCache
    /// Whether we present a client certificate (to word a rejection correctly).
    public let hasClientCertificate: Bool

    public init(_ configuration: TLSClientConfiguration) throws {
        self.configuration = configuration
        switch configuration.credentials {
        case let .x509(directory):
            let creds = try CertificateCredentials()
            var haveCertificate = false
            if let directory {
                let file = { QEMUCredentialLayout.path(directory, $0) }
                try creds.addTrustAnchors(file(QEMUCredentialLayout.caCertificate))
                if fileExists(file(QEMUCredentialLayout.revocationList)) { try creds.addRevocationList(file(QEMUCredentialLayout.revocationList)) }
                let certificate = file(QEMUCredentialLayout.clientCertificate), key = file(QEMUCredentialLayout.clientKey)
                switch (fileExists(certificate), fileExists(key)) {
                case (true, true):
                    try creds.setKeyPair(certificate: certificate, key: key)
                    haveCertificate = true
                case (true, false):
                    throw TLSError(.credentials, "client certificate '\(certificate)' has no matching key file '\(key)'")
                case (false, true):
                    throw TLSError(.credentials, "client key '\(key)' has no matching certificate file '\(certificate)'")
                case (false, false):
                    break
                }
            } else {
                try creds.addSystemTrustAnchors()
            }
            certificates = creds
            psk = nil
            hasClientCertificate = haveCertificate
        case let .psk(keyFile, username):
            let keys = try PSKKeyFile(contentsOf: keyFile)
            guard let key = keys.key(for: username) else {
                throw TLSError(.credentials, "PSK identity '\(username)' is not in key file '\(keyFile)'")
            }
            psk = try PSKClientCredentials(username: username, key: key)
            certificates = nil
            hasClientCertificate = false
        }
        priority = try PriorityCache(TLSPriority.resolve(configuration.priority, psk: psk != nil))
    }

    /// Runs the client handshake on `socket`. `hostname` is the name or address we
    /// connected to (nil for Unix sockets); `hostnameOverride` wins over it. Without any
    /// name the chain is still verified but no name is checked (libnbd's behaviour).
    public func connect(on socket: SocketStream, hostname: String?) throws -> TLSSession {
        let handle = try GnuTLSSessionHandle(server: false)
        try gnutlsCheck(gnutls_priority_set(handle.raw, priority.handle), .handshake, "cannot apply the TLS priority")
        var keepAlive: [AnyObject] = [priority]
        let name = configuration.hostnameOverride ?? hostname
        if let certificates {
            try gnutlsCheck(gnutls_credentials_set(handle.raw, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(certificates.handle)),
                            .handshake, "cannot attach certificates")
            keepAlive.append(certificates)
        }
        if let psk {
            try gnutlsCheck(gnutls_credentials_set(handle.raw, GNUTLS_CRD_PSK, UnsafeMutableRawPointer(psk.handle)), .handshake, "cannot attach the PSK key")
            keepAlive.append(psk)
        }
        if let name, !name.isEmpty, (try? CertificateIssuer.ipBytes(name)) == nil {
            // SNI carries DNS names only, never IP literals.
            _ = gnutls_server_name_set(handle.raw, GNUTLS_NAME_DNS, name, name.utf8.count)
        }
        let verifying = certificates != nil && configuration.verifyPeer
        let checkedName = verifying ? name.flatMap { $0.isEmpty ? nil : $0 } : nil
        let context = TLSSessionContext(pskKeys: nil)
        let session = TLSSession(handle: handle, socket: socket, role: .client, context: context, credentials: keepAlive,
                                 verifyHostname: checkedName)
        if verifying && checkedName == nil {
            gnutls_session_set_verify_cert(handle.raw, nil, 0)
        }
        let usesPSK = psk != nil
        let username = psk?.username
        let haveCertificate = hasClientCertificate
        let timeout = configuration.handshakeTimeout
        try session.handshake(timeout: timeout) { rc in
            HandshakeFailure.describe(rc, role: .client, session: handle.raw, context: context, usesPSK: usesPSK, pskUsername: username,
                                      hostname: checkedName, timeout: timeout, haveClientCertificate: haveCertificate)
        }
        if usesPSK {
            session.peerIdentity = nil
        } else if let certificate = peerCertificate(handle.raw) {
            session.peerIdentity = certificate.subjectText
            session.peerDistinguishedName = certificate.subject
        }
        // TLS 1.3: a server that refuses our certificate (or its absence) finishes the
        // handshake first and tells us only on our first read.
        if certificates != nil && gnutls_certificate_client_get_request_status(handle.raw) != 0 {
            session.expectRejectionOnFirstRead(haveCertificate
                ? "the server rejected our client certificate"
                : "the server requires a client certificate and none is configured (client-cert.pem, client-key.pem)")
        }
        return session
    }
}
