import CGnuTLS

/// Plain-words reasons for a GnuTLS certificate verification status (bit set).
enum VerificationStatus {
    static func reasons(_ status: UInt32, hostname: String?) -> [String] {
        var reasons: [String] = []
        func has(_ flag: gnutls_certificate_status_t) -> Bool { status & flag.rawValue != 0 }
        if has(GNUTLS_CERT_REVOKED) { reasons.append("certificate revoked") }
        if has(GNUTLS_CERT_EXPIRED) { reasons.append("certificate expired") }
        if has(GNUTLS_CERT_NOT_ACTIVATED) { reasons.append("certificate is not yet valid") }
        if has(GNUTLS_CERT_SIGNER_NOT_FOUND) { reasons.append("signed by an unknown CA") }
        if has(GNUTLS_CERT_SIGNER_NOT_CA) { reasons.append("its issuer is not a CA") }
        if has(GNUTLS_CERT_SIGNATURE_FAILURE) { reasons.append("its signature is invalid") }
        if has(GNUTLS_CERT_INSECURE_ALGORITHM) { reasons.append("it is signed with an insecure algorithm") }
        if has(GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) { reasons.append("its issuer's constraints forbid it") }
        if has(GNUTLS_CERT_PURPOSE_MISMATCH) { reasons.append("it is not meant for this purpose (key usage)") }
        if has(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED) || has(GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE) {
            reasons.append("the revocation list is stale or from the future")
        }
        if has(GNUTLS_CERT_UNEXPECTED_OWNER) {
            reasons.append(hostname.map { "certificate does not match hostname '\($0)'" } ?? "certificate does not match the expected name")
        }
        if has(GNUTLS_CERT_MISSING_OCSP_STATUS) || has(GNUTLS_CERT_INVALID_OCSP_STATUS) { reasons.append("OCSP status missing or invalid") }
        if reasons.isEmpty { reasons.append("verification failed (status 0x\(String(status, radix: 16)))") }
        return reasons
    }

    /// The named reason for a refused client certificate: an unknown CA outranks dates (a
    /// certificate nobody vouches for is refused whatever its dates say).
    static func refusalReason(_ status: UInt32) -> TLSRefusalReason? {
        func has(_ flag: gnutls_certificate_status_t) -> Bool { status & flag.rawValue != 0 }
        if has(GNUTLS_CERT_SIGNER_NOT_FOUND) { return .unknownCA }
        if has(GNUTLS_CERT_EXPIRED) || has(GNUTLS_CERT_NOT_ACTIVATED) { return .expired }
        return nil
    }

    /// "server certificate is not trusted: signed by an unknown CA; certificate expired"
    static func message(role: String, status: UInt32, hostname: String?) -> String {
        let list = reasons(status, hostname: hostname)
        // A pure hostname mismatch is clearer on its own than as "not trusted".
        if status == GNUTLS_CERT_INVALID.rawValue | GNUTLS_CERT_UNEXPECTED_OWNER.rawValue || status == GNUTLS_CERT_UNEXPECTED_OWNER.rawValue {
            return "\(role) does not match " + (hostname.map { "hostname '\($0)'" } ?? "the expected name")
        }
        return "\(role) is not trusted: \(list.joined(separator: "; "))"
    }
}
