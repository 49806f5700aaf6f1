#if canImport(Glibc)
import Glibc
#endif
import CGnuTLS

/// An X.509 certificate (owns a `gnutls_x509_crt_t`): parsed from PEM/DER or issued by
/// `CertificateIssuer`, inspected for `swiftnbd certs check` and for peer identities.
public final class Certificate: @unchecked Sendable {
    public enum SubjectAlternativeName: Sendable, Hashable, CustomStringConvertible {
        case dns(String)
        case ip(String)
        case other(String)
        public var description: String {
            switch self {
            case let .dns(name): return "DNS:\(name)"
            case let .ip(address): return "IP:\(address)"
            case let .other(text): return text
            }
        }
    }

    let handle: gnutls_x509_crt_t

    /// Takes ownership of `handle`.
    init(owning handle: gnutls_x509_crt_t) { self.handle = handle }

    init() throws {
        var crt: gnutls_x509_crt_t?
        try gnutlsCheck(gnutls_x509_crt_init(&crt), .x509, "cannot allocate a certificate")
        handle = crt!
    }

    deinit { gnutls_x509_crt_deinit(handle) }

    /// Parses one DER certificate (as a TLS peer sends it).
    public convenience init(der: UnsafeRawBufferPointer) throws {
        try self.init()
        var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: der.baseAddress?.assumingMemoryBound(to: UInt8.self)), size: UInt32(der.count))
        try gnutlsCheck(gnutls_x509_crt_import(handle, &datum, GNUTLS_X509_FMT_DER), .x509, "cannot parse the peer certificate")
    }

    /// All certificates in PEM text (a chain or a CA bundle); at least one.
    public static func loadChain(pem: [UInt8], source: String) throws -> [Certificate] {
        var list: UnsafeMutablePointer<gnutls_x509_crt_t?>?
        var count: UInt32 = 0
        let rc = pem.withUnsafeBufferPointer { buffer -> Int32 in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: buffer.baseAddress), size: UInt32(buffer.count))
            return gnutls_x509_crt_list_import2(&list, &count, &datum, GNUTLS_X509_FMT_PEM, 0)
        }
        if rc < 0 {
            throw TLSError(.credentials, "certificate file '\(source)' is not a readable PEM certificate: \(gnutlsDescription(rc))", gnutlsCode: rc)
        }
        defer { swiftnbd_gnutls_free(list) }
        var result: [Certificate] = []
        for i in 0..<Int(count) { if let crt = list?[i] { result.append(Certificate(owning: crt)) } }
        if result.isEmpty { throw TLSError(.credentials, "certificate file '\(source)' contains no certificate") }
        return result
    }

    public static func loadChain(fromFile path: String) throws -> [Certificate] {
        try loadChain(pem: try readWholeFile(path, what: "certificate"), source: path)
    }

    // MARK: Inspection

    /// Subject DN as GnuTLS prints it (RFC 4514: most specific first, e.g. `CN=x,O=y`).
    public var subjectText: String {
        var out = gnutls_datum_t()
        guard gnutls_x509_crt_get_dn3(handle, &out, 0) >= 0 else { return "" }
        return takeDatumString(&out)
    }

    public var issuerText: String {
        var out = gnutls_datum_t()
        guard gnutls_x509_crt_get_issuer_dn3(handle, &out, 0) >= 0 else { return "" }
        return takeDatumString(&out)
    }

    public var subject: DistinguishedName {
        (try? DistinguishedName(parsing: subjectText)) ?? DistinguishedName(attributes: [])
    }

    /// Seconds since the epoch.
    public var notBefore: Int { Int(gnutls_x509_crt_get_activation_time(handle)) }
    public var notAfter: Int { Int(gnutls_x509_crt_get_expiration_time(handle)) }

    public var isCertificateAuthority: Bool {
        var critical: UInt32 = 0, ca: UInt32 = 0
        var pathLength: Int32 = 0
        return gnutls_x509_crt_get_basic_constraints(handle, &critical, &ca, &pathLength) >= 0 && ca != 0
    }

    public var subjectAlternativeNames: [SubjectAlternativeName] {
        var names: [SubjectAlternativeName] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        for index in 0..<UInt32(256) {
            var size = buffer.count
            var type: UInt32 = 0
            let rc = buffer.withUnsafeMutableBytes { gnutls_x509_crt_get_subject_alt_name2(handle, index, $0.baseAddress, &size, &type, nil) }
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
            if rc < 0 { continue }
            let bytes = Array(buffer[..<size])
            switch gnutls_x509_subject_alt_name_t(UInt32(rc)) {
            case GNUTLS_SAN_DNSNAME: names.append(.dns(String(decoding: bytes, as: UTF8.self)))
            case GNUTLS_SAN_IPADDRESS: names.append(.ip(Self.ipText(bytes)))
            default: names.append(.other("type \(rc)"))
            }
        }
        return names
    }

    /// TLS purposes (extended key usage OIDs) listed in the certificate.
    public var keyPurposes: [String] {
        var result: [String] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        for index in 0..<UInt32(32) {
            var size = buffer.count
            let rc = buffer.withUnsafeMutableBytes { gnutls_x509_crt_get_key_purpose_oid(handle, index, $0.baseAddress, &size, nil) }
            if rc < 0 { break }
            result.append(String(decoding: buffer[..<size].prefix { $0 != 0 }, as: UTF8.self))
        }
        return result
    }

    /// The basicConstraints extension; nil when the certificate has none. Throws when it is
    /// present but unreadable.
    public var basicConstraints: BasicConstraints? {
        get throws {
            var critical: UInt32 = 0, ca: UInt32 = 0
            var pathLength: Int32 = -1
            let rc = gnutls_x509_crt_get_basic_constraints(handle, &critical, &ca, &pathLength)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { return nil }
            try gnutlsCheck(rc, .x509, "cannot read the basicConstraints extension")
            return BasicConstraints(isCA: ca != 0, isCritical: critical != 0, pathLength: pathLength >= 0 ? Int(pathLength) : nil)
        }
    }

    /// True when the certificate carries a (readable) basicConstraints extension.
    public var hasBasicConstraints: Bool { (try? basicConstraints) != nil }

    /// The keyUsage extension; nil when the certificate has none. Throws when it is present
    /// but unreadable.
    public var keyUsage: KeyUsageExtension? {
        get throws {
            var bits: UInt32 = 0, critical: UInt32 = 0
            let rc = gnutls_x509_crt_get_key_usage(handle, &bits, &critical)
            if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { return nil }
            try gnutlsCheck(rc, .x509, "cannot read the keyUsage extension")
            return KeyUsageExtension(usage: KeyUsage(rawValue: bits), isCritical: critical != 0)
        }
    }

    /// Every extended key usage (key purpose) entry with the critical flag of its extension;
    /// empty when the certificate has no extendedKeyUsage. Throws when it is unreadable.
    public var keyPurposeEntries: [KeyPurpose] {
        get throws {
            var result: [KeyPurpose] = []
            var buffer = [UInt8](repeating: 0, count: 256)
            var index: UInt32 = 0
            while index < 1024 {
                var size = buffer.count
                var critical: UInt32 = 0
                var rc = buffer.withUnsafeMutableBytes { gnutls_x509_crt_get_key_purpose_oid(handle, index, $0.baseAddress, &size, &critical) }
                if rc == GNUTLS_E_SHORT_MEMORY_BUFFER, size > buffer.count, size <= 65536 {
                    buffer = [UInt8](repeating: 0, count: size)
                    size = buffer.count
                    rc = buffer.withUnsafeMutableBytes { gnutls_x509_crt_get_key_purpose_oid(handle, index, $0.baseAddress, &size, &critical) }
                }
                if rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE { break }
                try gnutlsCheck(rc, .x509, "cannot read the extendedKeyUsage extension")
                let oid = String(decoding: buffer.prefix(min(size, buffer.count)).prefix { $0 != 0 }, as: UTF8.self)
                result.append(KeyPurpose(oid: oid, isCritical: critical != 0))
                index += 1
            }
            return result
        }
    }

    /// The subject public key's algorithm with its size or curve.
    public var publicKeyType: PublicKeyType {
        get throws {
            var bits: UInt32 = 0
            let algorithm = gnutls_x509_crt_get_pk_algorithm(handle, &bits)
            try gnutlsCheck(algorithm, .x509, "cannot read the public key algorithm")
            let size = Int(bits)
            let pk = gnutls_pk_algorithm_t(rawValue: UInt32(algorithm))
            switch pk {
            case GNUTLS_PK_RSA: return .rsa(bits: size)
            case GNUTLS_PK_RSA_PSS: return .rsaPSS(bits: size)
            case GNUTLS_PK_DSA: return .dsa(bits: size)
            case GNUTLS_PK_EDDSA_ED25519: return .ed25519
            case GNUTLS_PK_EDDSA_ED448: return .ed448
            case GNUTLS_PK_ECDSA:
                var curve = GNUTLS_ECC_CURVE_INVALID
                var x = gnutls_datum_t(), y = gnutls_datum_t()
                let rc = gnutls_x509_crt_get_pk_ecc_raw(handle, &curve, &x, &y)
                swiftnbd_gnutls_free(x.data)
                swiftnbd_gnutls_free(y.data)
                try gnutlsCheck(rc, .x509, "cannot read the elliptic curve of the public key")
                let name = gnutls_ecc_curve_get_name(curve).map { String(cString: $0) } ?? "curve \(curve.rawValue)"
                return .ecdsa(curve: name, bits: size)
            default:
                let name = gnutls_pk_algorithm_get_name(pk).map { String(cString: $0) } ?? "algorithm \(algorithm)"
                return .other(name: name, bits: size)
            }
        }
    }

    /// True when the certificate's SANs (or legacy CN) cover `name` (a DNS name or IP literal).
    public func matches(hostname name: String) -> Bool {
        gnutls_x509_crt_check_hostname2(handle, name, 0) != 0
    }

    /// Verifies this certificate (with `intermediates`) against `authorities` and optional
    /// revocation lists; returns the reasons it is not trusted (empty = trusted).
    public func verificationFailures(authorities: [Certificate], revocationLists: [RevocationList] = [],
                                     intermediates: [Certificate] = []) -> [String] {
        let chain: [gnutls_x509_crt_t?] = [handle] + intermediates.map { $0.handle }
        let cas: [gnutls_x509_crt_t?] = authorities.map { $0.handle }
        let crls: [gnutls_x509_crl_t?] = revocationLists.map { $0.handle }
        var status: UInt32 = 0
        let rc = gnutls_x509_crt_list_verify(chain, UInt32(chain.count), cas, UInt32(cas.count), crls, UInt32(crls.count), 0, &status)
        if rc < 0 { return ["verification could not run: \(gnutlsDescription(rc))"] }
        return status == 0 ? [] : VerificationStatus.reasons(status, hostname: nil)
    }

    /// True when `key` is the private half of this certificate's public key.
    public func isSigned(withKeyOf key: PrivateKey) -> Bool {
        var mine = [UInt8](repeating: 0, count: 64), theirs = [UInt8](repeating: 0, count: 64)
        var mineSize = mine.count, theirsSize = theirs.count
        guard gnutls_x509_crt_get_key_id(handle, 0, &mine, &mineSize) >= 0,
              gnutls_x509_privkey_get_key_id(key.handle, 0, &theirs, &theirsSize) >= 0 else { return false }
        return mine[..<mineSize] == theirs[..<theirsSize]
    }

    public func pemEncoded() throws -> String {
        var out = gnutls_datum_t()
        try gnutlsCheck(gnutls_x509_crt_export2(handle, GNUTLS_X509_FMT_PEM, &out), .x509, "cannot export a certificate")
        return takeDatumString(&out)
    }

    static func ipText(_ bytes: [UInt8]) -> String {
        var text = [CChar](repeating: 0, count: 64)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard bytes.count == 4 || bytes.count == 16,
              bytes.withUnsafeBytes({ inet_ntop(family, $0.baseAddress, &text, 64) }) != nil else {
            return bytes.map { String($0) }.joined(separator: ".")
        }
        return String(cString: text)
    }
}

// MARK: Extension and key types

extension Certificate {
    /// The basicConstraints extension (RFC 5280 4.2.1.9).
    public struct BasicConstraints: Sendable, Hashable {
        public var isCA: Bool
        public var isCritical: Bool
        /// nil: no path length limit.
        public var pathLength: Int?
        public init(isCA: Bool, isCritical: Bool = true, pathLength: Int? = nil) {
            self.isCA = isCA
            self.isCritical = isCritical
            self.pathLength = pathLength
        }
    }

    /// keyUsage bits (RFC 5280 4.2.1.3), with GnuTLS's bit values.
    public struct KeyUsage: OptionSet, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }

        public static let digitalSignature = KeyUsage(rawValue: UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE))
        public static let nonRepudiation = KeyUsage(rawValue: UInt32(GNUTLS_KEY_NON_REPUDIATION))
        public static let keyEncipherment = KeyUsage(rawValue: UInt32(GNUTLS_KEY_KEY_ENCIPHERMENT))
        public static let dataEncipherment = KeyUsage(rawValue: UInt32(GNUTLS_KEY_DATA_ENCIPHERMENT))
        public static let keyAgreement = KeyUsage(rawValue: UInt32(GNUTLS_KEY_KEY_AGREEMENT))
        public static let keyCertSign = KeyUsage(rawValue: UInt32(GNUTLS_KEY_KEY_CERT_SIGN))
        public static let crlSign = KeyUsage(rawValue: UInt32(GNUTLS_KEY_CRL_SIGN))
        public static let encipherOnly = KeyUsage(rawValue: UInt32(GNUTLS_KEY_ENCIPHER_ONLY))
        public static let decipherOnly = KeyUsage(rawValue: UInt32(GNUTLS_KEY_DECIPHER_ONLY))

        static let names: [(KeyUsage, String)] = [
            (.digitalSignature, "digitalSignature"), (.nonRepudiation, "nonRepudiation"),
            (.keyEncipherment, "keyEncipherment"), (.dataEncipherment, "dataEncipherment"),
            (.keyAgreement, "keyAgreement"), (.keyCertSign, "keyCertSign"), (.crlSign, "cRLSign"),
            (.encipherOnly, "encipherOnly"), (.decipherOnly, "decipherOnly"),
        ]

        /// RFC 5280 names, e.g. `digitalSignature, keyEncipherment`; `none` when empty.
        public var description: String {
            let listed = Self.names.filter { contains($0.0) }.map(\.1)
            return listed.isEmpty ? "none" : listed.joined(separator: ", ")
        }
    }

    public struct KeyUsageExtension: Sendable, Hashable {
        public var usage: KeyUsage
        public var isCritical: Bool
        public init(usage: KeyUsage, isCritical: Bool = true) {
            self.usage = usage
            self.isCritical = isCritical
        }
    }

    /// One extendedKeyUsage entry; `isCritical` is the flag of the whole extension.
    public struct KeyPurpose: Sendable, Hashable, CustomStringConvertible {
        public var oid: String
        public var isCritical: Bool
        public init(oid: String, isCritical: Bool = false) {
            self.oid = oid
            self.isCritical = isCritical
        }

        public static let tlsServerOID = "1.3.6.1.5.5.7.3.1"
        public static let tlsClientOID = "1.3.6.1.5.5.7.3.2"
        public static let anyOID = "2.5.29.37.0"

        /// The OID with its name when it is one of the well-known purposes.
        public var description: String { Self.name(of: oid).map { "\($0) (\(oid))" } ?? oid }

        public static func name(of oid: String) -> String? {
            switch oid {
            case tlsServerOID: return "TLS WWW server"
            case tlsClientOID: return "TLS WWW client"
            case anyOID: return "anyExtendedKeyUsage"
            case "1.3.6.1.5.5.7.3.3": return "code signing"
            case "1.3.6.1.5.5.7.3.4": return "email protection"
            case "1.3.6.1.5.5.7.3.8": return "time stamping"
            case "1.3.6.1.5.5.7.3.9": return "OCSP signing"
            default: return nil
            }
        }
    }

    /// The subject public key type. ECDSA curves carry GnuTLS's name (`SECP256R1` …).
    public enum PublicKeyType: Sendable, Hashable, CustomStringConvertible {
        case rsa(bits: Int)
        case rsaPSS(bits: Int)
        case dsa(bits: Int)
        case ecdsa(curve: String, bits: Int)
        case ed25519
        case ed448
        case other(name: String, bits: Int)

        public var description: String {
            switch self {
            case let .rsa(bits): return "RSA \(bits)-bit"
            case let .rsaPSS(bits): return "RSA-PSS \(bits)-bit"
            case let .dsa(bits): return "DSA \(bits)-bit"
            case let .ecdsa(curve, _):
                let nist = ["SECP192R1": "P-192", "SECP224R1": "P-224", "SECP256R1": "P-256", "SECP384R1": "P-384", "SECP521R1": "P-521"]
                return nist[curve].map { "ECDSA \($0) (\(curve))" } ?? "ECDSA \(curve)"
            case .ed25519: return "Ed25519"
            case .ed448: return "Ed448"
            case let .other(name, bits): return bits > 0 ? "\(name) \(bits)-bit" : name
            }
        }
    }
}
