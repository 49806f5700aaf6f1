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
