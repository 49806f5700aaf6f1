#if canImport(Glibc)
import Glibc
#endif
import CGnuTLS

/// What kind of certificate to issue; each kind carries the extensions QEMU's sanity checks
/// expect (critical basicConstraints/keyUsage, TLS WWW server/client purpose, SANs).
public enum CertificateKind: Sendable, Equatable {
    case authority
    case server(dnsNames: [String], ipAddresses: [String])
    case client
}

/// The basicConstraints, keyUsage and extendedKeyUsage an issued certificate carries.
/// `init(for:)` gives what QEMU 7.2 and 10 both accept for the kind (see
/// `QEMUCredentialRules`); tests change single fields to issue certificates QEMU refuses.
public struct CertificateExtensions: Sendable, Hashable {
    /// nil: no basicConstraints extension.
    public var basicConstraints: Certificate.BasicConstraints?
    /// nil: no keyUsage extension.
    public var keyUsage: Certificate.KeyUsageExtension?
    /// Empty: no extendedKeyUsage extension.
    public var keyPurposes: [String]
    public var keyPurposesCritical: Bool

    public init(basicConstraints: Certificate.BasicConstraints?, keyUsage: Certificate.KeyUsageExtension?,
                keyPurposes: [String] = [], keyPurposesCritical: Bool = false) {
        self.basicConstraints = basicConstraints
        self.keyUsage = keyUsage
        self.keyPurposes = keyPurposes
        self.keyPurposesCritical = keyPurposesCritical
    }

    /// A CA: critical CA:TRUE and critical keyCertSign + cRLSign. A server or client: critical
    /// CA:FALSE, critical digitalSignature + keyEncipherment (QEMU 10 wants both whatever the
    /// key type) and the TLS WWW server or client purpose (not critical).
    public init(for kind: CertificateKind) {
        switch kind {
        case .authority:
            self.init(basicConstraints: .init(isCA: true), keyUsage: .init(usage: [.keyCertSign, .crlSign]))
        case .server:
            self.init(basicConstraints: .init(isCA: false), keyUsage: .init(usage: [.digitalSignature, .keyEncipherment]),
                      keyPurposes: [Certificate.KeyPurpose.tlsServerOID])
        case .client:
            self.init(basicConstraints: .init(isCA: false), keyUsage: .init(usage: [.digitalSignature, .keyEncipherment]),
                      keyPurposes: [Certificate.KeyPurpose.tlsClientOID])
        }
    }
}

/// Issues X.509 certificates with GnuTLS (no openssl or certtool needed).
public struct CertificateIssuer: Sendable {
    public var kind: CertificateKind
    /// Subject DN, e.g. `CN=swiftnbd server,O=SwiftNBD`.
    public var subject: String
    /// Validity window in seconds since the epoch. Expired or not-yet-valid windows are
    /// allowed on purpose (negative tests).
    public var notBefore: Int
    public var notAfter: Int
    /// nil: the extensions `CertificateExtensions(for: kind)` gives.
    public var extensions: CertificateExtensions?

    public init(kind: CertificateKind, subject: String, notBefore: Int, notAfter: Int) {
        self.kind = kind
        self.subject = subject
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    /// A window starting a minute ago (clock skew) and lasting `days` (may be negative: expired).
    public init(kind: CertificateKind, subject: String, days: Int, now: Int = Int(time(nil))) {
        if days >= 0 {
            self.init(kind: kind, subject: subject, notBefore: now - 60, notAfter: now + days * 86400)
        } else {
            self.init(kind: kind, subject: subject, notBefore: now + days * 86400 - 86400, notAfter: now + days * 86400)
        }
    }

    /// Issues a certificate for `key`, signed by `issuer` (self-signed when nil).
    public func issue(for key: PrivateKey, issuer: (certificate: Certificate, key: PrivateKey)? = nil) throws -> Certificate {
        let crt = try Certificate()
        let h = crt.handle
        try gnutlsCheck(gnutls_x509_crt_set_version(h, 3), .x509, "cannot set certificate version")
        var serial = [UInt8](repeating: 0, count: 16)
        try gnutlsCheck(gnutls_rnd(GNUTLS_RND_NONCE, &serial, serial.count), .x509, "cannot make a serial number")
        serial[0] &= 0x7f // positive
        serial[0] |= 0x01 // no leading zero byte
        try gnutlsCheck(gnutls_x509_crt_set_serial(h, serial, serial.count), .x509, "cannot set serial number")
        try gnutlsCheck(gnutls_x509_crt_set_activation_time(h, time_t(notBefore)), .x509, "cannot set notBefore")
        try gnutlsCheck(gnutls_x509_crt_set_expiration_time(h, time_t(notAfter)), .x509, "cannot set notAfter")
        var errorPosition: UnsafePointer<CChar>?
        let dnRC = gnutls_x509_crt_set_dn(h, subject, &errorPosition)
        if dnRC < 0 {
            throw TLSError(.invalidArgument, "subject '\(subject)' is not a valid distinguished name: \(gnutlsDescription(dnRC))", gnutlsCode: dnRC)
        }
        try gnutlsCheck(gnutls_x509_crt_set_key(h, key.handle), .x509, "cannot set the certificate key")

        try Self.apply(extensions ?? CertificateExtensions(for: kind), to: h)
        if case let .server(dnsNames, ipAddresses) = kind {
            for name in dnsNames {
                try gnutlsCheck(gnutls_x509_crt_set_subject_alt_name(h, GNUTLS_SAN_DNSNAME, name, UInt32(name.utf8.count), UInt32(GNUTLS_FSAN_APPEND)),
                                .x509, "cannot add DNS name '\(name)'")
            }
            for address in ipAddresses {
                let bytes = try Self.ipBytes(address)
                try gnutlsCheck(gnutls_x509_crt_set_subject_alt_name(h, GNUTLS_SAN_IPADDRESS, bytes, UInt32(bytes.count), UInt32(GNUTLS_FSAN_APPEND)),
                                .x509, "cannot add IP address '\(address)'")
            }
        }

        var keyID = [UInt8](repeating: 0, count: 64)
        var keyIDSize = keyID.count
        if gnutls_x509_crt_get_key_id(h, 0, &keyID, &keyIDSize) >= 0 {
            _ = gnutls_x509_crt_set_subject_key_id(h, keyID, keyIDSize)
        }
        let signer = issuer ?? (crt, key)
        if issuer != nil {
            var authorityID = [UInt8](repeating: 0, count: 64)
            var authoritySize = authorityID.count
            if gnutls_x509_crt_get_key_id(signer.certificate.handle, 0, &authorityID, &authoritySize) >= 0 {
                _ = gnutls_x509_crt_set_authority_key_id(h, authorityID, authoritySize)
            }
        } else {
            _ = gnutls_x509_crt_set_authority_key_id(h, keyID, keyIDSize)
        }
        try gnutlsCheck(gnutls_x509_crt_sign2(h, signer.certificate.handle, signer.key.handle, signer.key.certificateSigningDigest, 0), .x509, "cannot sign the certificate")
        return crt
    }

    /// Writes basicConstraints, keyUsage and extendedKeyUsage with the requested critical flags.
    static func apply(_ extensions: CertificateExtensions, to h: gnutls_x509_crt_t) throws {
        if let constraints = extensions.basicConstraints {
            let pathLength = Int32(clamping: constraints.pathLength ?? -1)
            if constraints.isCritical {
                try gnutlsCheck(gnutls_x509_crt_set_basic_constraints(h, constraints.isCA ? 1 : 0, pathLength), .x509, "cannot set basicConstraints")
            } else {
                try setExtension(h, oid: "2.5.29.19", der: DER.basicConstraints(constraints), what: "basicConstraints")
            }
        }
        if let usage = extensions.keyUsage {
            if usage.isCritical {
                try gnutlsCheck(gnutls_x509_crt_set_key_usage(h, usage.usage.rawValue), .x509, "cannot set keyUsage")
            } else {
                try setExtension(h, oid: "2.5.29.15", der: DER.keyUsage(usage.usage), what: "keyUsage")
            }
        }
        for oid in extensions.keyPurposes {
            try gnutlsCheck(gnutls_x509_crt_set_key_purpose_oid(h, oid, extensions.keyPurposesCritical ? 1 : 0), .x509, "cannot set key purpose \(oid)")
        }
    }

    /// Adds a non-critical extension from its DER value. (GnuTLS's own setters always mark
    /// basicConstraints and keyUsage critical, and its encoders are not in the imported headers.)
    private static func setExtension(_ h: gnutls_x509_crt_t, oid: String, der: [UInt8], what: String) throws {
        try gnutlsCheck(gnutls_x509_crt_set_extension_by_oid(h, oid, der, der.count, 0), .x509, "cannot set \(what)")
    }

    /// DER values of the two extensions issued non-critical.
    enum DER {
        /// BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL }
        static func basicConstraints(_ constraints: Certificate.BasicConstraints) -> [UInt8] {
            var body: [UInt8] = constraints.isCA ? [0x01, 0x01, 0xff] : []
            if constraints.isCA, let pathLength = constraints.pathLength, pathLength >= 0 {
                var digits: [UInt8] = []
                var rest = pathLength
                repeat { digits.insert(UInt8(truncatingIfNeeded: rest), at: 0); rest >>= 8 } while rest > 0
                if let first = digits.first, first & 0x80 != 0 { digits.insert(0, at: 0) }
                body += [0x02, UInt8(truncatingIfNeeded: digits.count)] + digits
            }
            return [0x30, UInt8(truncatingIfNeeded: body.count)] + body
        }

        /// KeyUsage ::= BIT STRING (digitalSignature is bit 0, the top bit of the first byte;
        /// GnuTLS's flag values follow that layout, decipherOnly being 0x8000).
        static func keyUsage(_ usage: Certificate.KeyUsage) -> [UInt8] {
            var bytes = [UInt8(truncatingIfNeeded: usage.rawValue), UInt8(truncatingIfNeeded: usage.rawValue >> 8) & 0x80]
            while let last = bytes.last, last == 0 { bytes.removeLast() }
            let unused = UInt8(truncatingIfNeeded: bytes.last?.trailingZeroBitCount ?? 0)
            return [0x03, UInt8(truncatingIfNeeded: bytes.count + 1), unused] + bytes
        }
    }

    /// Binary form of an IPv4 or IPv6 literal.
    static func ipBytes(_ address: String) throws -> [UInt8] {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, address, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET6, address, &v6) == 1 { return v6 }
        throw TLSError(.invalidArgument, "'\(address)' is not an IPv4 or IPv6 address")
    }
}
