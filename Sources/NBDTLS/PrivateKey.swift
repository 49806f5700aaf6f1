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

    /// Key types beyond `Algorithm`, for tests that need certificates with keys QEMU's peers
    /// cannot use (DSA, small RSA, P-224) or other usable ones (Ed25519, P-384).
    enum TestKeyType: Sendable, Hashable {
        case rsa(bits: UInt32)
        case rsaPSS(bits: UInt32)
        case dsa(bits: UInt32)
        case ecdsa(curve: Curve)
        case ed25519
        case ed448

        enum Curve: Sendable, Hashable { case p192, p224, p256, p384, p521 }
    }

    convenience init(generatingForTests type: TestKeyType) throws {
        try self.init(empty: ())
        let rc: Int32
        switch type {
        case let .rsa(bits): rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_RSA, bits, 0)
        case let .rsaPSS(bits): rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_RSA_PSS, bits, 0)
        case let .dsa(bits): rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_DSA, bits, 0)
        case let .ecdsa(curve):
            let id: gnutls_ecc_curve_t
            switch curve {
            case .p192: id = GNUTLS_ECC_CURVE_SECP192R1
            case .p224: id = GNUTLS_ECC_CURVE_SECP224R1
            case .p256: id = GNUTLS_ECC_CURVE_SECP256R1
            case .p384: id = GNUTLS_ECC_CURVE_SECP384R1
            case .p521: id = GNUTLS_ECC_CURVE_SECP521R1
            }
            rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_ECDSA, swiftnbd_gnutls_curve_to_bits(id), 0)
        case .ed25519:
            rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_EDDSA_ED25519, swiftnbd_gnutls_curve_to_bits(GNUTLS_ECC_CURVE_ED25519), 0)
        case .ed448:
            rc = gnutls_x509_privkey_generate(handle, GNUTLS_PK_EDDSA_ED448, swiftnbd_gnutls_curve_to_bits(GNUTLS_ECC_CURVE_ED448), 0)
        }
        try gnutlsCheck(rc, .x509, "cannot generate a \(type) key")
    }

    /// The digest to sign certificates with: SHA-256, except that EdDSA keys fix their own
    /// (GnuTLS refuses SHA-256 with them and picks the right one for "unknown").
    var certificateSigningDigest: gnutls_digest_algorithm_t {
        let pk = gnutls_x509_privkey_get_pk_algorithm(handle)
        guard pk >= 0 else { return GNUTLS_DIG_SHA256 }
        switch gnutls_pk_algorithm_t(rawValue: UInt32(pk)) {
        case GNUTLS_PK_EDDSA_ED25519, GNUTLS_PK_EDDSA_ED448: return GNUTLS_DIG_UNKNOWN
        default: return GNUTLS_DIG_SHA256
        }
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
