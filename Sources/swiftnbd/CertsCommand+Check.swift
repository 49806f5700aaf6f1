import ArgumentParser
import NBDTLS
#if canImport(Glibc)
import Glibc
#endif

/// `swiftnbd certs check DIR [--hostname NAME]`: QEMU's credential rules (validity, basic
/// constraints, key usage, key purpose, key type; see `QEMUCredentialRules`), chain, SAN
/// match, and the subject DNs to give `--tls-authz` (or QEMU's authz-simple) in both orders.
struct CertsCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the credentials in DIR against QEMU's rules: expiry, CA flags, key usage and purpose, key types, chains, hostnames, DNs."
    )

    @Argument(help: "Credential directory (QEMU layout).")
    var directory: String

    @Option(name: .customLong("hostname"), help: "Name or address clients will connect to (repeatable).")
    var hostnames: [String] = []

    func run() throws {
        var problems = 0
        let L = QEMUCredentialLayout.self
        let rules = QEMUCredentialRules()
        let file: (String) -> String = { "\(directory)/\($0)" }
        guard access(file(L.caCertificate), F_OK) == 0 else {
            throw CertsError("\(file(L.caCertificate)) is missing: not a credential directory")
        }
        let authorities: [Certificate]
        do { authorities = try Certificate.loadChain(fromFile: file(L.caCertificate)) } catch let error as TLSError {
            throw CertsError(error.message)
        }
        var crls: [RevocationList] = []
        if access(file(L.revocationList), F_OK) == 0 {
            do { crls = [try RevocationList(pemFile: file(L.revocationList))] } catch let error as TLSError {
                print("\(L.revocationList): \(error.message)"); problems += 1
            }
        }
        for ca in authorities {
            print("\(L.caCertificate): \(ca.subjectText)")
            problems += report(ca, as: .ca, rules: rules)
        }
        let leaves: [(QEMUCredentialRules.Role, String, String)] = [(.server, L.serverCertificate, L.serverKey), (.client, L.clientCertificate, L.clientKey)]
        for (role, certName, keyName) in leaves {
            guard access(file(certName), F_OK) == 0 else { print("\(certName): absent"); continue }
            let certificate: Certificate
            let key: PrivateKey?
            do {
                certificate = try Certificate.loadChain(fromFile: file(certName))[0]
                key = access(file(keyName), F_OK) == 0 ? try PrivateKey(pemFile: file(keyName)) : nil
            } catch let error as TLSError {
                print("\(certName): PROBLEM: \(error.message)"); problems += 1; continue
            }
            print("\(certName) (\(role)):")
            if let key {
                if certificate.isSigned(withKeyOf: key) { print("  key: \(keyName) belongs to it") } else {
                    print("  key: PROBLEM: \(keyName) does not belong to this certificate"); problems += 1
                }
            } else {
                print("  key: PROBLEM: \(keyName) is missing"); problems += 1
            }
            print("  subject (RFC 4514 order, as GnuTLS/QEMU print it): \(certificate.subjectText)")
            print("  subject (certificate order):                       \(certificate.subject.reversed)")
            problems += report(certificate, as: role, rules: rules)
            let failures = certificate.verificationFailures(authorities: authorities, revocationLists: crls)
            if failures.isEmpty { print("  chain: trusted by \(L.caCertificate)") } else {
                print("  chain: PROBLEM: not trusted: \(failures.joined(separator: "; "))"); problems += 1
            }
            if role == .server {
                let sans = certificate.subjectAlternativeNames
                print("  subject alternative names: \(sans.isEmpty ? "none" : sans.map(\.description).joined(separator: ", "))")
                for name in hostnames {
                    if certificate.matches(hostname: name) { print("  hostname '\(name)': matches") } else {
                        print("  hostname '\(name)': PROBLEM: does not match"); problems += 1
                    }
                }
            } else {
                print("  authorize it with: --tls-authz '\(certificate.subjectText)'")
            }
        }
        if access(file(L.pskKeys), F_OK) == 0 {
            do {
                let keys = try PSKKeyFile(contentsOf: file(L.pskKeys))
                print("\(L.pskKeys): identities \(keys.entries.map { "\($0.identity) (\($0.key.count)-byte key)" }.joined(separator: ", "))")
            } catch let error as TLSError {
                print("\(L.pskKeys): PROBLEM: \(error.message)"); problems += 1
            }
        }
        if problems > 0 { throw CertsError("\(problems) problem(s) found") }
        print("OK")
    }

    /// Prints the validity window, the key type and every QEMU rule the certificate breaks
    /// (`PROBLEM (<rule>): …` or `WARNING (<rule>): …`); returns the number of problems.
    private func report(_ certificate: Certificate, as role: QEMUCredentialRules.Role, rules: QEMUCredentialRules) -> Int {
        let violations = rules.evaluate(certificate, as: role)
        var window = "  valid \(Self.date(certificate.notBefore)) to \(Self.date(certificate.notAfter))"
        if !violations.contains(where: { $0.rule == .validity }) {
            let (remaining, overflow) = certificate.notAfter.subtractingReportingOverflow(rules.now)
            if !overflow { window += " (\(remaining / 86400) days left)" }
        }
        print(window)
        if let type = try? certificate.publicKeyType { print("  key type: \(type)") }
        for violation in violations { print("  \(violation)") }
        return violations.filter { $0.severity == .problem }.count
    }

    static func date(_ seconds: Int) -> String { QEMUCredentialRules.utcText(seconds) }
}
