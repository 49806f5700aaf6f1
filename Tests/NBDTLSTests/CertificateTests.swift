import Foundation
import Testing
@testable import NBDTLS

@Suite("Certificates issued with GnuTLS")
struct CertificateTests {
    @Test("a created directory holds a CA, a server and a client certificate QEMU would accept")
    func createdDirectory() throws {
        let pki = try TestPKI(hostnames: ["nbd.example", "localhost"], ipAddresses: ["127.0.0.1", "::1"], clientName: "laptop")
        let dir = pki.directory
        let ca = try Certificate.loadChain(fromFile: "\(dir)/ca-cert.pem")[0]
        let server = try Certificate.loadChain(fromFile: "\(dir)/server-cert.pem")[0]
        let client = try Certificate.loadChain(fromFile: "\(dir)/client-cert.pem")[0]
        #expect(ca.isCertificateAuthority)
        #expect(!server.isCertificateAuthority && !client.isCertificateAuthority)
        #expect(server.subjectAlternativeNames == [.dns("nbd.example"), .dns("localhost"), .ip("127.0.0.1"), .ip("::1")])
        #expect(server.keyPurposes == ["1.3.6.1.5.5.7.3.1"])
        #expect(client.keyPurposes == ["1.3.6.1.5.5.7.3.2"])
        #expect(client.subjectText == "CN=laptop,O=SwiftNBD")
        #expect(server.verificationFailures(authorities: [ca]).isEmpty)
        #expect(client.verificationFailures(authorities: [ca]).isEmpty)
        #expect(server.matches(hostname: "nbd.example") && server.matches(hostname: "::1"))
        #expect(!server.matches(hostname: "other.example"))
        #expect(server.isSigned(withKeyOf: try PrivateKey(pemFile: "\(dir)/server-key.pem")))
        #expect(!server.isSigned(withKeyOf: try PrivateKey(pemFile: "\(dir)/client-key.pem")))
        for key in ["ca-key.pem", "server-key.pem", "client-key.pem", "keys.psk"] {
            let mode = try FileManager.default.attributesOfItem(atPath: "\(dir)/\(key)")[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(key)")
        }
        #expect(try PSKKeyFile(contentsOf: "\(dir)/keys.psk").key(for: "alice")?.count == 32)
    }

    @Test("a certificate from another CA fails verification as unknown CA")
    func otherCA() throws {
        let a = try TestPKI(), b = try TestPKI()
        let ca = try Certificate.loadChain(fromFile: "\(a.directory)/ca-cert.pem")
        let server = try Certificate.loadChain(fromFile: "\(b.directory)/server-cert.pem")[0]
        #expect(server.verificationFailures(authorities: ca) == ["signed by an unknown CA"])
    }

    @Test("an expired certificate fails verification as expired")
    func expired() throws {
        let now = Int(Date().timeIntervalSince1970)
        let pki = try TestPKI(leafValidity: (now - 3 * 86400, now - 86400))
        let ca = try Certificate.loadChain(fromFile: "\(pki.directory)/ca-cert.pem")
        let server = try Certificate.loadChain(fromFile: "\(pki.directory)/server-cert.pem")[0]
        #expect(server.verificationFailures(authorities: ca) == ["certificate expired"])
    }

    @Test("creating into a directory that already holds credentials refuses to overwrite")
    func noOverwrite() throws {
        let pki = try TestPKI()
        let error = #expect(throws: TLSError.self) { try CredentialDirectoryBuilder(hostnames: ["x"]).create(in: pki.directory) }
        #expect(error?.message.contains("already exists; refusing to overwrite it") == true)
    }

    @Test("bad IP addresses and subjects are rejected before anything is written")
    func badInputs() throws {
        let scratch = Scratch()
        let error = #expect(throws: TLSError.self) { try CredentialDirectoryBuilder(hostnames: ["x"], ipAddresses: ["300.1.1.1"]).create(in: scratch.file("d")) }
        #expect(error?.message == "'300.1.1.1' is not an IPv4 or IPv6 address")
        #expect(throws: TLSError.self) { try CredentialDirectoryBuilder(hostnames: []).create(in: scratch.file("e")) }
    }

    @Test("RSA 3072 keys work too")
    func rsa() throws {
        let key = try PrivateKey(generating: .rsa3072)
        let certificate = try CertificateIssuer(kind: .authority, subject: "CN=rsa", days: 1).issue(for: key)
        #expect(certificate.isCertificateAuthority)
        #expect(try certificate.pemEncoded().hasPrefix("-----BEGIN CERTIFICATE-----"))
    }
}
