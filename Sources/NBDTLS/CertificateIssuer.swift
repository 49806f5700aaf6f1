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

/// Issues X.509 certificates with GnuTLS (no openssl or certtool needed).
public struct CertificateIssuer: Sendable {
    public var kind: CertificateKind
    /// Subject DN, e.g. `CN=swiftnbd server,O=SwiftNBD`.
    public var subject: String
    /// Validity window in seconds since the epoch. Expired or not-yet-valid windows are
    /// allowed on purpose (negative tests).
    public var notBefore: Int
    public var notAfter: Int

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

        switch kind {
        case .authority:
            try gnutlsCheck(gnutls_x509_crt_set_basic_constraints(h, 1, -1), .x509, "cannot set basicConstraints")
            try gnutlsCheck(gnutls_x509_crt_set_key_usage(h, UInt32(GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN)), .x509, "cannot set keyUsage")
        case let .server(dnsNames, ipAddresses):
            try gnutlsCheck(gnutls_x509_crt_set_basic_constraints(h, 0, -1), .x509, "cannot set basicConstraints")
            try gnutlsCheck(gnutls_x509_crt_set_key_usage(h, UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT)), .x509, "cannot set keyUsage")
            try gnutlsCheck(gnutls_x509_crt_set_key_purpose_oid(h, "1.3.6.1.5.5.7.3.1", 0), .x509, "cannot set the TLS server purpose")
            for name in dnsNames {
                try gnutlsCheck(gnutls_x509_crt_set_subject_alt_name(h, GNUTLS_SAN_DNSNAME, name, UInt32(name.utf8.count), UInt32(GNUTLS_FSAN_APPEND)),
                                .x509, "cannot add DNS name '\(name)'")
            }
            for address in ipAddresses {
                let bytes = try Self.ipBytes(address)
                try gnutlsCheck(gnutls_x509_crt_set_subject_alt_name(h, GNUTLS_SAN_IPADDRESS, bytes, UInt32(bytes.count), UInt32(GNUTLS_FSAN_APPEND)),
                                .x509, "cannot add IP address '\(address)'")
            }
        case .client:
            try gnutlsCheck(gnutls_x509_crt_set_basic_constraints(h, 0, -1), .x509, "cannot set basicConstraints")
            try gnutlsCheck(gnutls_x509_crt_set_key_usage(h, UInt32(GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_ENCIPHERMENT)), .x509, "cannot set keyUsage")
            try gnutlsCheck(gnutls_x509_crt_set_key_purpose_oid(h, "1.3.6.1.5.5.7.3.2", 0), .x509, "cannot set the TLS client purpose")
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
        try gnutlsCheck(gnutls_x509_crt_sign2(h, signer.certificate.handle, signer.key.handle, GNUTLS_DIG_SHA256, 0), .x509, "cannot sign the certificate")
        return crt
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
