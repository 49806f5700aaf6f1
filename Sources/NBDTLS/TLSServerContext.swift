import CGnuTLS

/// The outcome of a successful server handshake. `refusal` is set when the peer proved who
/// it is but is not authorized: the engine reports it to the client (NBD_REP_ERR_POLICY)
/// over the now-encrypted channel and closes.
public struct TLSServerHandshake: Sendable {
    public var session: TLSSession
    public var peerIdentity: String?
    public var refusal: String?
}

/// Server-side TLS: credentials loaded once from a `TLSServerConfiguration` and shared by
/// every connection's session. To reload (SIGHUP), build a new context; sessions already
/// running keep the credentials they started with.
public final class TLSServerContext: @unchecked Sendable {
    public let configuration: TLSServerConfiguration
    private let certificates: CertificateCredentials?
    private let psk: PSKServerCredentials?
    private let priority: PriorityCache

    public init(_ configuration: TLSServerConfiguration) throws {
        self.configuration = configuration
        switch configuration.credentials {
        case let .x509(directory):
            let file = { QEMUCredentialLayout.path(directory, $0) }
            let creds = try CertificateCredentials()
            try creds.addTrustAnchors(file(QEMUCredentialLayout.caCertificate))
            try creds.setKeyPair(certificate: file(QEMUCredentialLayout.serverCertificate), key: file(QEMUCredentialLayout.serverKey))
            if fileExists(file(QEMUCredentialLayout.revocationList)) { try creds.addRevocationList(file(QEMUCredentialLayout.revocationList)) }
            if fileExists(file(QEMUCredentialLayout.dhParameters)) { try creds.setDHParameters(file(QEMUCredentialLayout.dhParameters)) }
            certificates = creds
            psk = nil
        case let .psk(keyFile):
            psk = try PSKServerCredentials(keys: PSKKeyFile(contentsOf: keyFile))
            certificates = nil
        }
        if !configuration.authorizedDNs.isEmpty {
            guard certificates != nil else {
                throw TLSError(.invalidArgument, "client DN authorization needs x509 certificates; it cannot be used with PSK")
            }
            guard configuration.verifyPeer else {
                throw TLSError(.invalidArgument, "client DN authorization needs verified client certificates; it cannot be combined with disabling peer verification")
            }
        }
        priority = try PriorityCache(TLSPriority.resolve(configuration.priority, psk: psk != nil))
    }

    /// Runs the server side of the handshake on `socket` (right after the STARTTLS ACK).
    /// On failure the socket is closed (after an alert) and a `TLSError` says why.
    public func accept(on socket: SocketStream) throws -> TLSServerHandshake {
        let handle = try GnuTLSSessionHandle(server: true)
        try gnutlsCheck(gnutls_priority_set(handle.raw, priority.handle), .handshake, "cannot apply the TLS priority")
        var keepAlive: [AnyObject] = [priority]
        if let certificates {
            try gnutlsCheck(gnutls_credentials_set(handle.raw, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(certificates.handle)),
                            .handshake, "cannot attach certificates")
            keepAlive.append(certificates)
        }
        if let psk {
            try gnutlsCheck(gnutls_credentials_set(handle.raw, GNUTLS_CRD_PSK, UnsafeMutableRawPointer(psk.handle)), .handshake, "cannot attach PSK keys")
            keepAlive.append(psk)
        }
        let verifying = certificates != nil && configuration.verifyPeer
        if verifying {
            gnutls_certificate_server_set_request(handle.raw, GNUTLS_CERT_REQUIRE)
        }
        let context = TLSSessionContext(pskKeys: psk?.keys)
        let session = TLSSession(handle: handle, socket: socket, role: .server, context: context, credentials: keepAlive, verifyHostname: nil)
        if verifying {
            // Verify the client chain (CA, dates, CRL) inside the handshake, so a bad
            // certificate ends it with an alert.
            gnutls_session_set_verify_cert(handle.raw, nil, 0)
        }
        let usesPSK = psk != nil
        try session.handshake(timeout: configuration.handshakeTimeout) { rc in
            HandshakeFailure.describe(rc, role: .server, session: handle.raw, context: context, usesPSK: usesPSK, pskUsername: nil,
                                      hostname: nil, timeout: configuration.handshakeTimeout, haveClientCertificate: false)
        }

        var identity: String?
        var refusal: String?
        if usesPSK {
            if let name = gnutls_psk_server_get_username(handle.raw) { identity = String(cString: name) }
        } else if let certificate = peerCertificate(handle.raw) {
            identity = certificate.subjectText
            session.peerDistinguishedName = certificate.subject
            if !configuration.authorizedDNs.permits(certificate.subject) {
                refusal = "client certificate DN '\(certificate.subjectText)' is not authorized"
            }
        }
        session.peerIdentity = identity
        return TLSServerHandshake(session: session, peerIdentity: identity, refusal: refusal)
    }
}

/// The leaf certificate the peer sent, if any.
func peerCertificate(_ session: gnutls_session_t) -> Certificate? {
    var count: UInt32 = 0
    guard let list = gnutls_certificate_get_peers(session, &count), count > 0 else { return nil }
    return try? Certificate(der: UnsafeRawBufferPointer(start: list[0].data, count: Int(list[0].size)))
}
