import Foundation
import Testing
@testable import NBDTLS

@Suite("Credential directories and files")
struct CredentialFilesTests {
    @Test("a missing directory names the missing CA file")
    func missingDirectory() {
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: "/nonexistent/pki"), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message == "CA certificate file '/nonexistent/pki/ca-cert.pem' is missing")
    }

    @Test("a server directory without its key names the key file")
    func missingServerKey() throws {
        let pki = try TestPKI()
        try FileManager.default.removeItem(atPath: "\(pki.directory)/server-key.pem")
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message.contains("private key file '\(pki.directory)/server-key.pem' is missing") == true)
    }

    @Test("a malformed certificate file is reported by name")
    func malformedCertificate() throws {
        let pki = try TestPKI()
        try "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n".write(toFile: "\(pki.directory)/server-cert.pem", atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message.contains("server-cert.pem' is not a readable PEM certificate") == true, "\(String(describing: error))")
    }

    @Test("a CA file without certificates is rejected")
    func emptyCA() throws {
        let pki = try TestPKI()
        try "hello\n".write(toFile: "\(pki.directory)/ca-cert.pem", atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory))) }
        #expect(error?.message.contains("ca-cert.pem") == true, "\(String(describing: error))")
    }

    @Test("a malformed private key is reported by name")
    func malformedKey() throws {
        let pki = try TestPKI()
        try "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".write(toFile: "\(pki.directory)/client-key.pem", atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory))) }
        #expect(error?.message.contains("client-key.pem' is not a readable unencrypted PEM key") == true, "\(String(describing: error))")
    }

    @Test("a certificate and a key that do not belong together are refused")
    func mismatchedKeyPair() throws {
        let pki = try TestPKI()
        try FileManager.default.removeItem(atPath: "\(pki.directory)/server-key.pem")
        try FileManager.default.copyItem(atPath: "\(pki.directory)/client-key.pem", toPath: "\(pki.directory)/server-key.pem")
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message.contains("cannot use certificate") == true, "\(String(describing: error))")
    }

    @Test("malformed DH parameters are reported by name")
    func malformedDHParameters() throws {
        let pki = try TestPKI()
        try "-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n".write(toFile: "\(pki.directory)/dh-params.pem", atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message.contains("cannot load DH parameters '\(pki.directory)/dh-params.pem'") == true, "\(String(describing: error))")
    }

    @Test("a malformed revocation list is reported by name")
    func malformedCRL() throws {
        let pki = try TestPKI()
        try "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".write(toFile: "\(pki.directory)/ca-crl.pem", atomically: true, encoding: .utf8)
        let error = #expect(throws: TLSError.self) { try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout)) }
        #expect(error?.message.contains("ca-crl.pem") == true, "\(String(describing: error))")
    }

    @Test("a client certificate without its key is a configuration error")
    func clientCertificateWithoutKey() throws {
        let pki = try TestPKI()
        try FileManager.default.removeItem(atPath: "\(pki.directory)/client-key.pem")
        let error = #expect(throws: TLSError.self) { try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory))) }
        #expect(error?.message.contains("has no matching key file") == true)
    }

    @Test("a PSK username missing from the key file is named")
    func missingPSKUser() throws {
        let pki = try TestPKI()
        let error = #expect(throws: TLSError.self) { try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: pki.pskFile, username: "bob"))) }
        #expect(error?.message == "PSK identity 'bob' is not in key file '\(pki.pskFile)'")
    }

    @Test("an invalid priority string is rejected at load time")
    func badPriority() throws {
        let pki = try TestPKI()
        let error = #expect(throws: TLSError.self) {
            try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), priority: "NORMAL:+BOGUS", handshakeTimeout: testHandshakeTimeout))
        }
        #expect(error?.message.contains("TLS priority string 'NORMAL:+BOGUS' is invalid") == true, "\(String(describing: error))")
    }

    @Test("DN authorization without verified client certificates is a configuration error")
    func authzNeedsVerification() throws {
        let pki = try TestPKI()
        #expect(throws: TLSError.self) {
            try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), verifyPeer: false,
                                                        authorizedDNs: try DNAuthorizationList(parsing: ["CN=x"]), handshakeTimeout: testHandshakeTimeout))
        }
        #expect(throws: TLSError.self) {
            try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), authorizedDNs: try DNAuthorizationList(parsing: ["CN=x"]), handshakeTimeout: testHandshakeTimeout))
        }
    }
}
