import CGnuTLS

/// An X.509 certificate revocation list (owns a `gnutls_x509_crl_t`).
public final class RevocationList: @unchecked Sendable {
    let handle: gnutls_x509_crl_t

    init() throws {
        var crl: gnutls_x509_crl_t?
        try gnutlsCheck(gnutls_x509_crl_init(&crl), .x509, "cannot allocate a revocation list")
        handle = crl!
    }

    deinit { gnutls_x509_crl_deinit(handle) }

    public convenience init(pem: [UInt8], source: String = "revocation list") throws {
        try self.init()
        let rc = pem.withUnsafeBufferPointer { buffer -> Int32 in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            return gnutls_x509_crl_import(handle, &datum, GNUTLS_X509_FMT_PEM)
        }
        try gnutlsCheck(rc, .credentials, "revocation list '\(source)' is not a readable PEM CRL")
    }

    public convenience init(pemFile path: String) throws {
        try self.init(pem: try readWholeFile(path, what: "revocation list"), source: path)
    }

    /// A CRL signed by `authority` revoking `revoked`, valid from `thisUpdate` for `days`.
    public convenience init(revoking revoked: [Certificate], authority: Certificate, authorityKey: PrivateKey,
                            thisUpdate: Int, days: Int = 30) throws {
        try self.init()
        try gnutlsCheck(gnutls_x509_crl_set_version(handle, 2), .x509, "cannot set CRL version")
        try gnutlsCheck(gnutls_x509_crl_set_this_update(handle, time_t(thisUpdate)), .x509, "cannot set CRL date")
        try gnutlsCheck(gnutls_x509_crl_set_next_update(handle, time_t(thisUpdate + days * 86400)), .x509, "cannot set CRL date")
        for certificate in revoked {
            try gnutlsCheck(gnutls_x509_crl_set_crt(handle, certificate.handle, time_t(thisUpdate)), .x509, "cannot revoke a certificate")
        }
        try gnutlsCheck(gnutls_x509_crl_sign2(handle, authority.handle, authorityKey.handle, GNUTLS_DIG_SHA256, 0), .x509, "cannot sign the CRL")
    }

    public func pemEncoded() throws -> String {
        var out = gnutls_datum_t()
        try gnutlsCheck(gnutls_x509_crl_export2(handle, GNUTLS_X509_FMT_PEM, &out), .x509, "cannot export the CRL")
        return takeDatumString(&out)
    }
}
