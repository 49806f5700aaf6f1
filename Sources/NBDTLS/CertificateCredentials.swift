import CGnuTLS

/// Owns one `gnutls_certificate_credentials_t` (trust anchors, CRL, own key pair) and the
/// DH parameters it points to. Loaded once and shared by every session it creates; a reload
/// builds a new instance while sessions keep the one they started with.
final class CertificateCredentials: @unchecked Sendable {
    let handle: gnutls_certificate_credentials_t
    private var dhParams: gnutls_dh_params_t?

    init() throws {
        var creds: gnutls_certificate_credentials_t?
        try gnutlsCheck(gnutls_certificate_allocate_credentials(&creds), .credentials, "cannot allocate certificate credentials")
        handle = creds!
    }

    deinit {
        gnutls_certificate_free_credentials(handle)
        if let dhParams { gnutls_dh_params_deinit(dhParams) }
    }

    /// Adds the CA certificates in `path` as trust anchors.
    func addTrustAnchors(_ path: String) throws {
        try requireFile(path, what: "CA certificate")
        let n = gnutls_certificate_set_x509_trust_file(handle, path, GNUTLS_X509_FMT_PEM)
        try gnutlsCheck(n, .credentials, "cannot load CA certificate '\(path)'")
        if n == 0 { throw TLSError(.credentials, "CA certificate file '\(path)' contains no certificate") }
    }

    func addSystemTrustAnchors() throws {
        try gnutlsCheck(gnutls_certificate_set_x509_system_trust(handle), .credentials, "cannot load the system trust store")
    }

    func addRevocationList(_ path: String) throws {
        let n = gnutls_certificate_set_x509_crl_file(handle, path, GNUTLS_X509_FMT_PEM)
        try gnutlsCheck(n, .credentials, "cannot load certificate revocation list '\(path)'")
    }

    /// Sets our own certificate (chain) and private key.
    func setKeyPair(certificate: String, key: String) throws {
        try requireFile(certificate, what: "certificate")
        try requireFile(key, what: "private key")
        // Parse separately first so the message names the file that is broken.
        _ = try Certificate.loadChain(fromFile: certificate)
        _ = try PrivateKey(pemFile: key)
        try gnutlsCheck(gnutls_certificate_set_x509_key_file(handle, certificate, key, GNUTLS_X509_FMT_PEM), .credentials,
                        "cannot use certificate '\(certificate)' with key '\(key)'")
    }

    func setDHParameters(_ path: String) throws {
        let bytes = try readWholeFile(path, what: "DH parameters")
        var params: gnutls_dh_params_t?
        try gnutlsCheck(gnutls_dh_params_init(&params), .credentials, "cannot allocate DH parameters")
        var rc: Int32 = 0
        bytes.withUnsafeBufferPointer { buffer in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            rc = gnutls_dh_params_import_pkcs3(params, &datum, GNUTLS_X509_FMT_PEM)
        }
        if rc < 0 {
            gnutls_dh_params_deinit(params)
            throw TLSError(.credentials, "cannot load DH parameters '\(path)': \(gnutlsDescription(rc))", gnutlsCode: rc)
        }
        dhParams = params
        gnutls_certificate_set_dh_params(handle, params)
    }

    private func requireFile(_ path: String, what: String) throws {
        guard fileExists(path) else { throw TLSError(.credentials, "\(what) file '\(path)' is missing") }
    }
}

/// Owns a server's `gnutls_psk_server_credentials_t`; keys are looked up per session from
/// the parsed key file (see `TLSSessionContext`), so an unknown identity can be named.
final class PSKServerCredentials: @unchecked Sendable {
    let handle: gnutls_psk_server_credentials_t
    let keys: PSKKeyFile

    init(keys: PSKKeyFile) throws {
        var creds: gnutls_psk_server_credentials_t?
        try gnutlsCheck(gnutls_psk_allocate_server_credentials(&creds), .credentials, "cannot allocate PSK credentials")
        handle = creds!
        self.keys = keys
        gnutls_psk_set_server_credentials_function2(handle, pskServerLookup)
    }

    deinit { gnutls_psk_free_server_credentials(handle) }
}

/// GnuTLS asks for the key of `username`; the session's context holds the key table.
private func pskServerLookup(_ session: gnutls_session_t?, _ username: UnsafePointer<gnutls_datum_t>?,
                             _ key: UnsafeMutablePointer<gnutls_datum_t>?) -> Int32 {
    guard let session, let username, let key, let raw = gnutls_session_get_ptr(session) else { return -1 }
    let context = Unmanaged<TLSSessionContext>.fromOpaque(raw).takeUnretainedValue()
    let name = String(decoding: UnsafeRawBufferPointer(start: username.pointee.data, count: Int(username.pointee.size)), as: UTF8.self)
    context.offeredPSKIdentity = name
    guard let secret = context.pskKeys?.key(for: name) else {
        context.unknownPSKIdentity = name
        return -1
    }
    return secret.withUnsafeBytes { swiftnbd_gnutls_datum_copy(key, $0.baseAddress, UInt32($0.count)) }
}

/// Owns a client's `gnutls_psk_client_credentials_t` holding one identity and key.
final class PSKClientCredentials: @unchecked Sendable {
    let handle: gnutls_psk_client_credentials_t
    let username: String

    init(username: String, key: [UInt8]) throws {
        var creds: gnutls_psk_client_credentials_t?
        try gnutlsCheck(gnutls_psk_allocate_client_credentials(&creds), .credentials, "cannot allocate PSK credentials")
        handle = creds!
        self.username = username
        var rc: Int32 = 0
        key.withUnsafeBufferPointer { buffer in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            rc = gnutls_psk_set_client_credentials(handle, username, &datum, GNUTLS_PSK_KEY_RAW)
        }
        if rc < 0 {
            // deinit frees the handle: self is fully initialised here.
            throw TLSError(.credentials, "cannot use PSK identity '\(username)': \(gnutlsDescription(rc))", gnutlsCode: rc)
        }
    }

    deinit { gnutls_psk_free_client_credentials(handle) }
}
