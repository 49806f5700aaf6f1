#if canImport(Glibc)
import Glibc
#endif

/// The checks QEMU applies to the certificates of a `tls-creds-x509` object when it loads
/// (its own certificate and every CA in ca-cert.pem), plus what a GnuTLS handshake with the
/// default priorities needs of a server or client key. `evaluate` names each rule a
/// certificate breaks and which QEMU versions refuse it, so `swiftnbd certs check` can say
/// more than "refused".
///
/// The rules, as established against QEMU 7.2 and 10.0:
/// - validity: now must lie within notBefore…notAfter (every certificate);
/// - basic constraints: a CA must carry basicConstraints with CA:TRUE; a server or client
///   certificate must not be a CA (no extension at all is fine for them);
/// - key usage, only when the extension is critical: a CA needs keyCertSign; a server or
///   client needs digitalSignature (7.2 and 10) and keyEncipherment (10 only). A CA whose
///   non-critical keyUsage lacks keyCertSign passes QEMU's check but GnuTLS then does not
///   trust what it signed;
/// - key purpose, only when extendedKeyUsage is critical: a server needs TLS WWW server or
///   anyExtendedKeyUsage, a client TLS WWW client or anyExtendedKeyUsage;
/// - key type (server and client): RSA or RSA-PSS (1024 bits at least, 2048 recommended),
///   ECDSA on P-256/P-384/P-521, Ed25519 or Ed448. QEMU loads others (DSA, P-224, …) but
///   the handshake fails.
/// Chain verification against ca-cert.pem is `Certificate.verificationFailures`.
public struct QEMUCredentialRules: Sendable {
    /// The role a certificate plays in a credential directory.
    public enum Role: String, Sendable, CaseIterable, CustomStringConvertible {
        case ca, server, client
        public var description: String { rawValue }
        var certificateName: String { self == .ca ? "a CA certificate" : "a \(rawValue) certificate" }
    }

    public enum Rule: String, Sendable, CaseIterable, CustomStringConvertible {
        case validity = "validity"
        case basicConstraints = "basic constraints"
        case keyUsage = "key usage"
        case keyPurpose = "key purpose"
        case keyType = "key type"
        public var description: String { rawValue }
    }

    public enum Severity: String, Sendable, Hashable {
        /// QEMU refuses the credentials, or no TLS handshake can succeed with them.
        case problem
        /// Works with default settings, but weak or refused by stricter settings.
        case warning
    }

    /// One broken rule.
    public struct Violation: Sendable, Hashable, CustomStringConvertible {
        public var rule: Rule
        public var severity: Severity
        /// What is wrong and what the role needs.
        public var message: String
        /// Who refuses it, e.g. "QEMU 10 refuses it; QEMU 7.2 accepted it".
        public var enforcement: String

        public init(rule: Rule, severity: Severity = .problem, message: String, enforcement: String) {
            self.rule = rule
            self.severity = severity
            self.message = message
            self.enforcement = enforcement
        }

        /// `<message> [<enforcement>]`, as `certs check` prints it after the rule name.
        public var explanation: String { "\(message) [\(enforcement)]" }
        public var description: String { "\(severity == .problem ? "PROBLEM" : "WARNING") (\(rule)): \(explanation)" }
    }

    enum Enforcement {
        static let bothRefuse = "QEMU 7.2 and 10 refuse it"
        static let onlyQEMU10 = "QEMU 10 refuses it; QEMU 7.2 accepted it"
        static let validity = "QEMU 7.2 and 10 refuse it, and TLS peers reject it"
        static let untrustedIssues = "QEMU 7.2 and 10 load it, but GnuTLS does not trust the certificates it signed"
        static let handshake = "QEMU 7.2 and 10 load it, but the TLS handshake fails with GnuTLS's default priorities"
        static let weakRSA = "GnuTLS's default priorities still use it; stricter ones (%PROFILE_MEDIUM and up, FIPS mode) refuse it"
    }

    /// ECDSA curves GnuTLS's default priorities sign a handshake with (GnuTLS names).
    public static let handshakeCurves: Set<String> = ["SECP256R1", "SECP384R1", "SECP521R1"]
    /// RSA keys under this many bits make the handshake fail (insecure algorithm).
    public static let minimumRSABits = 1024
    /// RSA keys under this many bits draw a warning.
    public static let recommendedRSABits = 2048

    /// Seconds since the epoch the validity rule compares with.
    public var now: Int

    public init(now: Int = Int(time(nil))) { self.now = now }

    /// Every rule `certificate` breaks in `role`, in rule order.
    public func evaluate(_ certificate: Certificate, as role: Role) -> [Violation] {
        Rule.allCases.flatMap { evaluate(certificate, as: role, rule: $0) }
    }

    /// The violations of one rule.
    public func evaluate(_ certificate: Certificate, as role: Role, rule: Rule) -> [Violation] {
        switch rule {
        case .validity: return validity(certificate)
        case .basicConstraints: return basicConstraints(certificate, role)
        case .keyUsage: return keyUsage(certificate, role)
        case .keyPurpose: return keyPurpose(certificate, role)
        case .keyType: return keyType(certificate, role)
        }
    }

    // MARK: Rules

    func validity(_ certificate: Certificate) -> [Violation] {
        let notBefore = certificate.notBefore, notAfter = certificate.notAfter
        if notBefore == -1 || notAfter == -1 {
            return [Violation(rule: .validity, message: "the validity window cannot be read", enforcement: Enforcement.validity)]
        }
        if now > notAfter {
            return [Violation(rule: .validity, message: "has expired (notAfter \(Self.utcText(notAfter)))", enforcement: Enforcement.validity)]
        }
        if now < notBefore {
            return [Violation(rule: .validity, message: "is not yet active (notBefore \(Self.utcText(notBefore)))", enforcement: Enforcement.validity)]
        }
        return []
    }

    func basicConstraints(_ certificate: Certificate, _ role: Role) -> [Violation] {
        let constraints: Certificate.BasicConstraints?
        do { constraints = try certificate.basicConstraints } catch {
            return [Violation(rule: .basicConstraints, message: "\(error)", enforcement: Enforcement.bothRefuse)]
        }
        switch (role, constraints) {
        case (.ca, nil):
            return [Violation(rule: .basicConstraints, message: "no basicConstraints extension; \(role.certificateName) needs one with CA:TRUE",
                              enforcement: Enforcement.bothRefuse)]
        case let (.ca, constraints?) where !constraints.isCA:
            return [Violation(rule: .basicConstraints, message: "basicConstraints say CA:FALSE; \(role.certificateName) needs CA:TRUE",
                              enforcement: Enforcement.bothRefuse)]
        case let (.server, constraints?) where constraints.isCA, let (.client, constraints?) where constraints.isCA:
            return [Violation(rule: .basicConstraints, message: "basicConstraints say CA:TRUE; \(role.certificateName) must not be a CA",
                              enforcement: Enforcement.bothRefuse)]
        default:
            return []
        }
    }

    func keyUsage(_ certificate: Certificate, _ role: Role) -> [Violation] {
        let usage: Certificate.KeyUsageExtension?
        do { usage = try certificate.keyUsage } catch {
            return [Violation(rule: .keyUsage, message: "\(error)", enforcement: Enforcement.bothRefuse)]
        }
        guard let usage else { return [] } // no keyUsage: any use is allowed
        let allowed = "\(usage.isCritical ? "critical" : "non-critical") keyUsage allows \(Self.only(usage.usage))"
        if role == .ca {
            guard !usage.usage.contains(.keyCertSign) else { return [] }
            return [Violation(rule: .keyUsage, message: "\(allowed); \(role.certificateName) needs keyCertSign",
                              enforcement: usage.isCritical ? Enforcement.bothRefuse : Enforcement.untrustedIssues)]
        }
        guard usage.isCritical else { return [] }
        var found: [Violation] = []
        if !usage.usage.contains(.digitalSignature) {
            found.append(Violation(rule: .keyUsage, message: "\(allowed); \(role.certificateName) needs digitalSignature",
                                   enforcement: Enforcement.bothRefuse))
        }
        if !usage.usage.contains(.keyEncipherment) {
            var message = "\(allowed); \(role.certificateName) also needs keyEncipherment"
            switch try? certificate.publicKeyType {
            case .ecdsa?: message += ", even with an ECDSA key"
            case .ed25519?, .ed448?: message += ", even with an EdDSA key"
            default: break
            }
            found.append(Violation(rule: .keyUsage, message: message, enforcement: Enforcement.onlyQEMU10))
        }
        return found
    }

    func keyPurpose(_ certificate: Certificate, _ role: Role) -> [Violation] {
        guard role != .ca else { return [] }
        let purposes: [Certificate.KeyPurpose]
        do { purposes = try certificate.keyPurposeEntries } catch {
            return [Violation(rule: .keyPurpose, message: "\(error)", enforcement: Enforcement.bothRefuse)]
        }
        guard purposes.contains(where: \.isCritical) else { return [] } // none, or not critical
        let wanted = role == .server ? Certificate.KeyPurpose.tlsServerOID : Certificate.KeyPurpose.tlsClientOID
        let oids = purposes.map(\.oid)
        if oids.contains(wanted) || oids.contains(Certificate.KeyPurpose.anyOID) { return [] }
        let listed = purposes.map(\.description).joined(separator: ", ")
        let needed = "\(Certificate.KeyPurpose(oid: wanted)) or \(Certificate.KeyPurpose(oid: Certificate.KeyPurpose.anyOID))"
        return [Violation(rule: .keyPurpose, message: "critical extendedKeyUsage lists \(listed); \(role.certificateName) needs \(needed)",
                          enforcement: Enforcement.bothRefuse)]
    }

    func keyType(_ certificate: Certificate, _ role: Role) -> [Violation] {
        guard role != .ca else { return [] } // GnuTLS verifies CA signatures of every key type it parses
        let type: Certificate.PublicKeyType
        do { type = try certificate.publicKeyType } catch {
            return [Violation(rule: .keyType, message: "\(error)", enforcement: Enforcement.handshake)]
        }
        let usable = "use ECDSA P-256/P-384/P-521, Ed25519, Ed448 or RSA of \(Self.recommendedRSABits) bits or more"
        switch type {
        case let .rsa(bits), let .rsaPSS(bits):
            if bits < Self.minimumRSABits {
                return [Violation(rule: .keyType, message: "\(type) key: GnuTLS rejects RSA keys under \(Self.minimumRSABits) bits as insecure; \(usable)",
                                  enforcement: Enforcement.handshake)]
            }
            if bits < Self.recommendedRSABits {
                return [Violation(rule: .keyType, severity: .warning,
                                  message: "\(type) key is weak; use \(Self.recommendedRSABits) bits or more", enforcement: Enforcement.weakRSA)]
            }
            return []
        case let .ecdsa(curve, _):
            if Self.handshakeCurves.contains(curve) { return [] }
            return [Violation(rule: .keyType, message: "\(type) key: GnuTLS's default priorities sign only with ECDSA on P-256, P-384 or P-521; \(usable)",
                              enforcement: Enforcement.handshake)]
        case .ed25519, .ed448:
            return []
        case .dsa, .other:
            return [Violation(rule: .keyType, message: "\(type) key: GnuTLS's default priorities have no signature algorithm for it; \(usable)",
                              enforcement: Enforcement.handshake)]
        }
    }

    // MARK: Text

    /// "digitalSignature only", "keyCertSign and cRLSign", "nothing".
    static func only(_ usage: Certificate.KeyUsage) -> String {
        let names = Certificate.KeyUsage.names.filter { usage.contains($0.0) }.map(\.1)
        guard let last = names.last else { return "nothing" }
        if names.count == 1 { return "\(last) only" }
        return "\(names.dropLast().joined(separator: ", ")) and \(last) only"
    }

    /// `2025-01-31 12:00 UTC`.
    public static func utcText(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return "\(seconds) s since the epoch" }
        var buffer = [CChar](repeating: 0, count: 40)
        guard strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M UTC", &parts) > 0 else { return "\(seconds) s since the epoch" }
        return String(cString: buffer)
    }
}
