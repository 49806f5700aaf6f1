import Foundation
import NBDTLS
import Testing

/// The machine-readable reason a server handshake carries when it refuses a client (the
/// server's TLS metrics count by it).
@Suite("TLS refusal reasons")
struct TLSRefusalReasonTests {
    func x509Server(_ pki: TestPKI) throws -> TLSServerContext {
        try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
    }

    @Test("no client certificate")
    func noClientCertificate() throws {
        let pki = try TestPKI()
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: try pki.caOnlyDirectory())))
        let error = try #require(handshake(server: try x509Server(pki), client: client).server.tlsError)
        #expect(error.refusalReason == .noClientCertificate, "\(error)")
    }

    @Test("a client certificate from an unknown CA")
    func unknownCA() throws {
        let pki = try TestPKI(), other = try TestPKI()
        let clientDir = other.scratch.subdirectory("mixed")
        try FileManager.default.copyItem(atPath: "\(pki.directory)/ca-cert.pem", toPath: "\(clientDir)/ca-cert.pem")
        for name in ["client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(other.directory)/\(name)", toPath: "\(clientDir)/\(name)")
        }
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: clientDir)))
        let error = try #require(handshake(server: try x509Server(pki), client: client).server.tlsError)
        #expect(error.refusalReason == .unknownCA, "\(error)")
    }

    @Test("an expired client certificate")
    func expired() throws {
        let now = Int(Date().timeIntervalSince1970)
        let pki = try TestPKI(leafValidity: (now - 10 * 86400, now - 86400))
        // The server's own leaf is expired too: the client does not check it, the server checks the client's.
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory), verifyPeer: false))
        let error = try #require(handshake(server: try x509Server(pki), client: client).server.tlsError)
        #expect(error.refusalReason == .expired, "\(error)")
    }

    @Test("an unknown PSK identity and a wrong PSK key")
    func psk() throws {
        let pki = try TestPKI()
        let scratch = Scratch()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), handshakeTimeout: testHandshakeTimeout))
        let bob = try scratch.write("bob.psk", "bob:" + String(repeating: "ab", count: 32) + "\n")
        let unknown = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: bob, username: "bob")))
        #expect(handshake(server: server, client: unknown, hostname: nil).server.tlsError?.refusalReason == .unknownPSKIdentity)
        let wrong = try scratch.write("alice.psk", "alice:" + String(repeating: "cd", count: 32) + "\n")
        let wrongKey = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: wrong, username: "alice")))
        #expect(handshake(server: server, client: wrongKey, hostname: nil).server.tlsError?.refusalReason == .wrongPSKKey)
    }

    @Test("failures without a named reason carry none, and a good handshake no error at all")
    func unnamed() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: 0.3))
        let (serverSocket, clientSocket) = socketPair()
        defer { clientSocket.close() }
        let timeout = try #require(throws: TLSError.self) { try server.accept(on: serverSocket) }
        #expect(timeout.refusalReason == nil)
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        #expect(handshake(server: try x509Server(pki), client: client).server.error == nil)
    }
}
