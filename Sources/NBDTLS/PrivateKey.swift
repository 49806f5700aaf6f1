import CGnuTLS

/// An X.509 private key (owns a `gnutls_x509_privkey_t`): generated, or loaded from PEM.
public final class PrivateKey: @unchecked Sendable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case ecdsaP256 = "ecdsa-p256"
        case rsa3072 = "rsa-3072"
    }

    let handle: gnutls_x509_privkey_t

    private init(empty: Void) throws {
        var key: gnutls_x509_privkey_t?
        try gnutlsCheck(gnutls_x509_privkey_init(&key), .x509, "cannot allocate a private key")
        handle = key!
    }

    deinit { gnutls_x509_privkey_deinit(handle) }

    /// Generates a fresh key.
    public convenience init(generating algorithm: Algorithm) throws {
        try self.init(empty: ())
        let rc: Int32
        switch algorithm {
        case .ecdsaP256:
            rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_ECDSA, swiftnbd_gnutls_curve_to_bits(GNUTLS_ECC_CURVE_SECP256R1), 0)
        case .rsa3072:
            rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_RSA, 3072, 0)
        }
        try gnutlsCheck(rc, .x509, "cannot generate a \(algorithm.rawValue) key")
    }

    /// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
    public convenience init(pem: [UInt8], source: String = "private key") throws {
        try self.init(empty: ())
        let rc = pem.withUnsafeBufferPointer { buffer -> Int32 in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            return gnutls_x509_privkey_import2(handle, &datum, GNUTLS_X509_FMT_PEM, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue))
        }
        try gnutlsCheck(rc, .credentials, "private key '\(source)' is not a readable unencrypted PEM key")
    }

    public convenience init(pemFile path: String) throws {
        try self.init(pem: try readWholeFile(path, what: "private key"), source: path)
    }

    /// Unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
    public func pemEncoded() throws -> String {
        var out = gnutls_datum_t()
        try gnutlsCheck(gnutls_x509_privkey_export2_pkcs8(handle, GNUTLS_X509_FMT_PEM, nil, UInt32(GNUTLS_PKCS_PLAIN.rawValue), &out),
                        .x509, "cannot export a private key")
        return takeDatumString(&out)
    }
}

/// Copies a GnuTLS-allocated datum into a String and frees it.
func takeDatumString(_ datum: inout gnutls_datum_t) -> String {
    defer { swiftnbd_gnutls_free(datum.data); datum.data = nil; datum.size = 0 }
    guard let data = datum.data else { return "" }
    return String(decoding: UnsafeRawBufferPointer(start: data, count: Int(datum.size)), as: UTF8.self)
}

func takeDatumBytes(_ datum: inout gnutls_datum_t) -> [UInt8] {
    defer { swiftnbd_gnutls_free(datum.data); datum.data = nil; datum.size = 0 }
    guard let data = datum.data else { return [] }
    return Array(UnsafeRawBufferPointer(start: data, count: Int(datum.size)))
}
