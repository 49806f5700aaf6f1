import Foundation
import Testing
@testable import NBDTLS

/// Self-signed test certificates with chosen extensions, key type and validity (the rules
/// look at one certificate at a time; the chain is `verificationFailures`' job).
private func issueForRules(_ kind: CertificateKind = .client, key type: PrivateKey.TestKeyType = .ecdsa(curve: .p256),
                   extensions: CertificateExtensions? = nil, notBefore: Int? = nil, notAfter: Int? = nil) throws -> Certificate {
    let now = Int(Date().timeIntervalSince1970)
    var issuer = CertificateIssuer(kind: kind, subject: "CN=rules test", notBefore: notBefore ?? now - 60, notAfter: notAfter ?? now + 86400)
    issuer.extensions = extensions
    return try issuer.issue(for: try PrivateKey(generatingForTests: type))
}

/// The usual leaf extensions with one field changed.
private func leafExtensions(_ kind: CertificateKind = .client, _ change: (inout CertificateExtensions) -> Void) -> CertificateExtensions {
    var extensions = CertificateExtensions(for: kind)
    change(&extensions)
    return extensions
}

private let rulesUnderTest = QEMUCredentialRules()
private let serverKind = CertificateKind.server(dnsNames: ["localhost"], ipAddresses: [])

@Suite("QEMU's rules for x509 credentials")
struct QEMUCredentialRulesTests {
    // MARK: Accessors

    @Test("the accessors read keyUsage, key purposes, basicConstraints and the key type with their critical flags")
    func accessors() throws {
        let defaults = try issueForRules(.client)
        #expect(try defaults.keyUsage == .init(usage: [.digitalSignature, .keyEncipherment], isCritical: true))
        #expect(try defaults.keyPurposeEntries == [.init(oid: Certificate.KeyPurpose.tlsClientOID, isCritical: false)])
        #expect(try defaults.basicConstraints == .init(isCA: false, isCritical: true))
        #expect(defaults.hasBasicConstraints)
        #expect(try defaults.publicKeyType == .ecdsa(curve: "SECP256R1", bits: 256))

        let custom = try issueForRules(.authority, key: .ed25519, extensions: CertificateExtensions(
            basicConstraints: .init(isCA: true, isCritical: false, pathLength: 200),
            keyUsage: .init(usage: [.keyCertSign, .decipherOnly], isCritical: false),
            keyPurposes: [Certificate.KeyPurpose.tlsServerOID, Certificate.KeyPurpose.anyOID], keyPurposesCritical: true))
        #expect(try custom.basicConstraints == .init(isCA: true, isCritical: false, pathLength: 200))
        #expect(try custom.keyUsage == .init(usage: [.keyCertSign, .decipherOnly], isCritical: false))
        #expect(try custom.keyPurposeEntries.map(\.oid) == [Certificate.KeyPurpose.tlsServerOID, Certificate.KeyPurpose.anyOID])
        #expect(try custom.keyPurposeEntries.allSatisfy(\.isCritical))
        #expect(try custom.publicKeyType == .ed25519)

        let bare = try issueForRules(.client, extensions: CertificateExtensions(basicConstraints: nil, keyUsage: nil))
        #expect(try bare.basicConstraints == nil && !bare.hasBasicConstraints)
        #expect(try bare.keyUsage == nil)
        #expect(try bare.keyPurposeEntries.isEmpty)
        #expect(try issueForRules(key: .rsa(bits: 2048)).publicKeyType == .rsa(bits: 2048))
        #expect(try issueForRules(key: .ecdsa(curve: .p384)).publicKeyType.description == "ECDSA P-384 (SECP384R1)")
    }

    @Test("non-critical keyUsage DER encodes every bit GnuTLS defines")
    func keyUsageEncoding() throws {
        #expect(CertificateIssuer.DER.keyUsage([.digitalSignature]) == [0x03, 0x02, 0x07, 0x80])
        #expect(CertificateIssuer.DER.keyUsage([.digitalSignature, .keyEncipherment]) == [0x03, 0x02, 0x05, 0xa0])
        #expect(CertificateIssuer.DER.keyUsage([.decipherOnly]) == [0x03, 0x03, 0x07, 0x00, 0x80])
        #expect(CertificateIssuer.DER.keyUsage([]) == [0x03, 0x01, 0x00])
        #expect(CertificateIssuer.DER.basicConstraints(.init(isCA: false)) == [0x30, 0x00])
        #expect(CertificateIssuer.DER.basicConstraints(.init(isCA: true)) == [0x30, 0x03, 0x01, 0x01, 0xff])
        let all: Certificate.KeyUsage = [.digitalSignature, .nonRepudiation, .keyEncipherment, .dataEncipherment, .keyAgreement,
                                         .keyCertSign, .crlSign, .encipherOnly, .decipherOnly]
        let certificate = try issueForRules(.client, extensions: leafExtensions { $0.keyUsage = .init(usage: all, isCritical: false) })
        #expect(try certificate.keyUsage == .init(usage: all, isCritical: false))
    }

    // MARK: What certs create issues

    @Test("certificates with the default extensions break no rule in their role, for every key type certs create offers",
          arguments: PrivateKey.Algorithm.allCases)
    func defaultsPass(algorithm: PrivateKey.Algorithm) throws {
        let now = Int(Date().timeIntervalSince1970)
        let key = try PrivateKey(generating: algorithm)
        for (kind, role) in [(CertificateKind.authority, QEMUCredentialRules.Role.ca), (serverKind, .server), (.client, .client)] {
            let certificate = try CertificateIssuer(kind: kind, subject: "CN=\(role)", days: 30, now: now).issue(for: key)
            #expect(rulesUnderTest.evaluate(certificate, as: role) == [], "\(algorithm) \(role)")
        }
    }

    @Test("a directory from CredentialDirectoryBuilder passes every rule")
    func builtDirectoryPasses() throws {
        let pki = try TestPKI()
        for (file, role) in [("ca-cert.pem", QEMUCredentialRules.Role.ca), ("server-cert.pem", .server), ("client-cert.pem", .client)] {
            let certificate = try Certificate.loadChain(fromFile: "\(pki.directory)/\(file)")[0]
            #expect(rulesUnderTest.evaluate(certificate, as: role) == [], "\(file)")
        }
    }

    // MARK: Validity

    @Test("validity: every role must be within notBefore…notAfter", arguments: QEMUCredentialRules.Role.allCases)
    func validity(role: QEMUCredentialRules.Role) throws {
        let now = Int(Date().timeIntervalSince1970)
        let kind: CertificateKind = role == .ca ? .authority : role == .server ? serverKind : .client
        let expired = try issueForRules(kind, notBefore: now - 3 * 86400, notAfter: now - 86400)
        let future = try issueForRules(kind, notBefore: now + 86400, notAfter: now + 3 * 86400)
        let current = try issueForRules(kind)
        let expiredFound = rulesUnderTest.evaluate(expired, as: role)
        #expect(expiredFound.map(\.rule) == [.validity])
        #expect(expiredFound.first?.message.hasPrefix("has expired (notAfter ") == true)
        #expect(expiredFound.first?.enforcement == "QEMU 7.2 and 10 refuse it, and TLS peers reject it")
        let futureFound = rulesUnderTest.evaluate(future, as: role)
        #expect(futureFound.map(\.rule) == [.validity])
        #expect(futureFound.first?.message.hasPrefix("is not yet active (notBefore ") == true)
        #expect(rulesUnderTest.evaluate(current, as: role) == [])
        #expect(QEMUCredentialRules(now: now + 2 * 86400).evaluate(future, as: role) == [])
    }

    // MARK: Basic constraints

    @Test("basic constraints: a CA needs CA:TRUE and the extension; a server or client must not be a CA")
    func basicConstraints() throws {
        let noBC = try issueForRules(.authority, extensions: CertificateExtensions(basicConstraints: nil, keyUsage: .init(usage: [.keyCertSign])))
        let found = rulesUnderTest.evaluate(noBC, as: .ca)
        #expect(found.map(\.rule) == [.basicConstraints])
        #expect(found.first?.message == "no basicConstraints extension; a CA certificate needs one with CA:TRUE")
        #expect(found.first?.enforcement == "QEMU 7.2 and 10 refuse it")

        let notCA = try issueForRules(.authority, extensions: CertificateExtensions(basicConstraints: .init(isCA: false), keyUsage: .init(usage: [.keyCertSign])))
        #expect(rulesUnderTest.evaluate(notCA, as: .ca).map(\.message) == ["basicConstraints say CA:FALSE; a CA certificate needs CA:TRUE"])
        let nonCriticalCA = try issueForRules(.authority, extensions: CertificateExtensions(basicConstraints: .init(isCA: true, isCritical: false),
                                                                                    keyUsage: .init(usage: [.keyCertSign])))
        #expect(rulesUnderTest.evaluate(nonCriticalCA, as: .ca) == [])

        for (kind, role) in [(serverKind, QEMUCredentialRules.Role.server), (.client, .client)] {
            let leafCA = try issueForRules(kind, extensions: leafExtensions(kind) { $0.basicConstraints = .init(isCA: true) })
            let leafFound = rulesUnderTest.evaluate(leafCA, as: role)
            #expect(leafFound.map(\.rule) == [.basicConstraints])
            #expect(leafFound.first?.message == "basicConstraints say CA:TRUE; a \(role) certificate must not be a CA")
            let leafNoBC = try issueForRules(kind, extensions: leafExtensions(kind) { $0.basicConstraints = nil })
            #expect(rulesUnderTest.evaluate(leafNoBC, as: role) == [])
        }
        // The same certificate is fine as a CA and wrong as a client.
        let ca = try issueForRules(.authority)
        #expect(rulesUnderTest.evaluate(ca, as: .ca) == [])
        #expect(rulesUnderTest.evaluate(ca, as: .client, rule: .basicConstraints).count == 1)
    }

    // MARK: Key usage

    @Test("key usage: an ECDSA client certificate with critical digitalSignature only is refused by QEMU 10 (7.2 accepted it)")
    func ecdsaSignatureOnlyClient() throws {
        let certificate = try issueForRules(.client, key: .ecdsa(curve: .p256),
                                    extensions: leafExtensions { $0.keyUsage = .init(usage: [.digitalSignature], isCritical: true) })
        let found = rulesUnderTest.evaluate(certificate, as: .client)
        #expect(found.count == 1)
        let violation = try #require(found.first)
        #expect(violation.rule == .keyUsage && violation.severity == .problem)
        #expect(violation.message == "critical keyUsage allows digitalSignature only; a client certificate also needs keyEncipherment, even with an ECDSA key")
        #expect(violation.enforcement == "QEMU 10 refuses it; QEMU 7.2 accepted it")
        #expect(violation.description.hasPrefix("PROBLEM (key usage): critical keyUsage allows digitalSignature only"))
        #expect(violation.description.hasSuffix("[QEMU 10 refuses it; QEMU 7.2 accepted it]"))
    }

    @Test("key usage: a critical keyUsage on a server or client needs digitalSignature (7.2 and 10) and keyEncipherment (10)",
          arguments: [QEMUCredentialRules.Role.server, .client])
    func leafKeyUsage(role: QEMUCredentialRules.Role) throws {
        let kind: CertificateKind = role == .server ? serverKind : .client
        func found(_ usage: Certificate.KeyUsage, critical: Bool = true, key: PrivateKey.TestKeyType = .ecdsa(curve: .p256)) throws -> [QEMUCredentialRules.Violation] {
            rulesUnderTest.evaluate(try issueForRules(kind, key: key, extensions: leafExtensions(kind) { $0.keyUsage = .init(usage: usage, isCritical: critical) }), as: role)
        }
        #expect(try found([.digitalSignature, .keyEncipherment]) == [])
        #expect(try found([.digitalSignature, .keyEncipherment, .keyAgreement]) == [])

        let encipherOnly = try found([.keyEncipherment], key: .rsa(bits: 2048))
        #expect(encipherOnly.map(\.message) == ["critical keyUsage allows keyEncipherment only; a \(role) certificate needs digitalSignature"])
        #expect(encipherOnly.map(\.enforcement) == ["QEMU 7.2 and 10 refuse it"])

        let rsaSignatureOnly = try found([.digitalSignature], key: .rsa(bits: 2048))
        #expect(rsaSignatureOnly.map(\.message) == ["critical keyUsage allows digitalSignature only; a \(role) certificate also needs keyEncipherment"])
        #expect(try found([.digitalSignature], key: .ed25519).first?.message.hasSuffix("even with an EdDSA key") == true)

        let neither = try found([.crlSign])
        #expect(neither.map(\.rule) == [.keyUsage, .keyUsage])
        #expect(neither.map(\.enforcement) == ["QEMU 7.2 and 10 refuse it", "QEMU 10 refuses it; QEMU 7.2 accepted it"])

        // Not critical, or absent: QEMU does not look.
        #expect(try found([.digitalSignature], critical: false) == [])
        #expect(try found([], critical: false) == [])
        let absent = try issueForRules(kind, extensions: leafExtensions(kind) { $0.keyUsage = nil })
        #expect(rulesUnderTest.evaluate(absent, as: role) == [])
    }

    @Test("key usage: a CA needs keyCertSign (critical: QEMU refuses; not critical: GnuTLS distrusts what it signed)")
    func caKeyUsage() throws {
        func ca(_ usage: Certificate.KeyUsage?, critical: Bool = true) throws -> Certificate {
            try issueForRules(.authority, extensions: CertificateExtensions(basicConstraints: .init(isCA: true),
                                                                    keyUsage: usage.map { .init(usage: $0, isCritical: critical) }))
        }
        let critical = rulesUnderTest.evaluate(try ca([.crlSign]), as: .ca)
        #expect(critical.map(\.message) == ["critical keyUsage allows cRLSign only; a CA certificate needs keyCertSign"])
        #expect(critical.map(\.enforcement) == ["QEMU 7.2 and 10 refuse it"])
        let nonCritical = rulesUnderTest.evaluate(try ca([.crlSign, .digitalSignature], critical: false), as: .ca)
        #expect(nonCritical.map(\.message) == ["non-critical keyUsage allows digitalSignature and cRLSign only; a CA certificate needs keyCertSign"])
        #expect(nonCritical.map(\.enforcement) == ["QEMU 7.2 and 10 load it, but GnuTLS does not trust the certificates it signed"])
        #expect(rulesUnderTest.evaluate(try ca([.keyCertSign]), as: .ca) == [])
        #expect(rulesUnderTest.evaluate(try ca(nil), as: .ca) == [])
    }

    @Test("key usage: GnuTLS itself refuses what a CA with non-critical keyUsage lacking keyCertSign signed")
    func caWithoutCertSignIsUntrusted() throws {
        let caKey = try PrivateKey(generating: .ecdsaP256)
        var caIssuer = CertificateIssuer(kind: .authority, subject: "CN=no cert sign", days: 1)
        caIssuer.extensions = CertificateExtensions(basicConstraints: .init(isCA: true), keyUsage: .init(usage: [.crlSign], isCritical: false))
        let ca = try caIssuer.issue(for: caKey)
        let leaf = try CertificateIssuer(kind: .client, subject: "CN=leaf", days: 1).issue(for: try PrivateKey(generating: .ecdsaP256), issuer: (ca, caKey))
        #expect(!leaf.verificationFailures(authorities: [ca]).isEmpty)
    }

    // MARK: Key purpose

    @Test("key purpose: a critical extendedKeyUsage must allow the role (or anyExtendedKeyUsage); a non-critical one is ignored")
    func keyPurpose() throws {
        let S = Certificate.KeyPurpose.tlsServerOID, C = Certificate.KeyPurpose.tlsClientOID, any = Certificate.KeyPurpose.anyOID
        func found(_ kind: CertificateKind, _ role: QEMUCredentialRules.Role, _ purposes: [String], critical: Bool) throws -> [QEMUCredentialRules.Violation] {
            rulesUnderTest.evaluate(try issueForRules(kind, extensions: leafExtensions(kind) { $0.keyPurposes = purposes; $0.keyPurposesCritical = critical }), as: role)
        }
        let clientAsServer = try found(.client, .client, [S], critical: true)
        #expect(clientAsServer.map(\.rule) == [.keyPurpose])
        #expect(clientAsServer.first?.message == "critical extendedKeyUsage lists TLS WWW server (1.3.6.1.5.5.7.3.1); a client certificate needs TLS WWW client (1.3.6.1.5.5.7.3.2) or anyExtendedKeyUsage (2.5.29.37.0)")
        #expect(clientAsServer.first?.enforcement == "QEMU 7.2 and 10 refuse it")
        let serverAsClient = try found(serverKind, .server, [C, "1.3.6.1.5.5.7.3.4"], critical: true)
        #expect(serverAsClient.first?.message == "critical extendedKeyUsage lists TLS WWW client (1.3.6.1.5.5.7.3.2), email protection (1.3.6.1.5.5.7.3.4); a server certificate needs TLS WWW server (1.3.6.1.5.5.7.3.1) or anyExtendedKeyUsage (2.5.29.37.0)")

        #expect(try found(.client, .client, [C], critical: true) == [])
        #expect(try found(.client, .client, [any], critical: true) == [])
        #expect(try found(serverKind, .server, [S, C], critical: true) == [])
        #expect(try found(serverKind, .server, [any], critical: true) == [])
        #expect(try found(.client, .client, [S], critical: false) == [])
        #expect(try found(serverKind, .server, [C], critical: false) == [])
        #expect(try found(.client, .client, [], critical: false) == [])
        // QEMU does not check a CA's purposes.
        let ca = try issueForRules(.authority, extensions: CertificateExtensions(basicConstraints: .init(isCA: true), keyUsage: .init(usage: [.keyCertSign]),
                                                                         keyPurposes: [C], keyPurposesCritical: true))
        #expect(rulesUnderTest.evaluate(ca, as: .ca) == [])
    }

    // MARK: Key type

    @Test("key type: keys GnuTLS's default priorities can sign a handshake with pass",
          arguments: [PrivateKey.TestKeyType.ecdsa(curve: .p256), .ecdsa(curve: .p384), .ecdsa(curve: .p521), .ed25519, .ed448,
                      .rsa(bits: 2048), .rsaPSS(bits: 2048)])
    func usableKeyTypes(type: PrivateKey.TestKeyType) throws {
        #expect(rulesUnderTest.evaluate(try issueForRules(.client, key: type), as: .client) == [])
        #expect(rulesUnderTest.evaluate(try issueForRules(serverKind, key: type), as: .server) == [])
    }

    @Test("key type: DSA, small RSA and curves other than P-256/384/521 are problems; RSA under 2048 bits a warning")
    func unusableKeyTypes() throws {
        for (type, prefix) in [(PrivateKey.TestKeyType.dsa(bits: 1024), "DSA 1024-bit key: GnuTLS's default priorities have no signature algorithm for it"),
                               (.ecdsa(curve: .p224), "ECDSA P-224 (SECP224R1) key: GnuTLS's default priorities sign only with ECDSA on P-256, P-384 or P-521"),
                               (.rsa(bits: 768), "RSA 768-bit key: GnuTLS rejects RSA keys under 1024 bits as insecure")] {
            let found = rulesUnderTest.evaluate(try issueForRules(.client, key: type), as: .client)
            #expect(found.map(\.rule) == [.keyType], "\(type)")
            #expect(found.first?.severity == .problem)
            #expect(found.first?.message.hasPrefix(prefix) == true, "\(found)")
            #expect(found.first?.enforcement == "QEMU 7.2 and 10 load it, but the TLS handshake fails with GnuTLS's default priorities")
            // A CA's own key only signs certificates, which GnuTLS verifies for any of these.
            #expect(rulesUnderTest.evaluate(try issueForRules(.authority, key: type), as: .ca) == [], "\(type)")
        }
        let weak = rulesUnderTest.evaluate(try issueForRules(serverKind, key: .rsa(bits: 1024)), as: .server)
        #expect(weak.map(\.severity) == [.warning])
        #expect(weak.first?.description == "WARNING (key type): RSA 1024-bit key is weak; use 2048 bits or more [GnuTLS's default priorities still use it; stricter ones (%PROFILE_MEDIUM and up, FIPS mode) refuse it]")
    }

    // MARK: Several at once

    @Test("every broken rule is reported, in rule order")
    func several() throws {
        let now = Int(Date().timeIntervalSince1970)
        let certificate = try issueForRules(.client, key: .dsa(bits: 1024), extensions: CertificateExtensions(
            basicConstraints: .init(isCA: true), keyUsage: .init(usage: [.digitalSignature]),
            keyPurposes: [Certificate.KeyPurpose.tlsServerOID], keyPurposesCritical: true), notBefore: now - 7200, notAfter: now - 3600)
        #expect(rulesUnderTest.evaluate(certificate, as: .client).map(\.rule) == [.validity, .basicConstraints, .keyUsage, .keyPurpose, .keyType])
        #expect(rulesUnderTest.evaluate(certificate, as: .client, rule: .keyPurpose).count == 1)
    }
}
