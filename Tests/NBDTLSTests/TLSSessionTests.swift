import Foundation
import Testing
@testable import NBDTLS

@Suite("TLS sessions over a socketpair")
struct TLSSessionTests {
    @Test("x509 with a client certificate carries data both ways and names the client")
    func x509RoundTrip() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let result = handshake(server: server, client: client)
        let serverSide = try result.server.get()
        let clientSession = try result.client.get()
        #expect(serverSide.refusal == nil)
        #expect(serverSide.peerIdentity?.contains("CN=swiftnbd-client") == true)
        try exchange(serverSide.session, clientSession)
        clientSession.close()
        serverSide.session.close()
    }

    @Test("a server certificate checked against its IP address SAN is accepted")
    func ipAddressSAN() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let result = handshake(server: server, client: client, hostname: "127.0.0.1")
        #expect(result.client.error == nil, "\(String(describing: result.client.error))")
        #expect(result.server.error == nil)
    }

    @Test("PSK authenticates the identity and prefers AES-GCM over ChaCha20")
    func pskRoundTrip() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: pki.pskFile, username: "alice")))
        let result = handshake(server: server, client: client, hostname: nil)
        let serverSide = try result.server.get()
        let clientSession = try result.client.get()
        #expect(serverSide.peerIdentity == "alice")
        #expect(clientSession.connectionSummary.contains("AES"), "\(clientSession.connectionSummary)")
        try exchange(serverSide.session, clientSession)
    }

    @Test("TLS 1.2 works for x509 and PSK when the server caps the version")
    func tls12() throws {
        let pki = try TestPKI()
        let x509Server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), priority: "NORMAL:-VERS-TLS1.3", handshakeTimeout: testHandshakeTimeout))
        let x509Client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let a = handshake(server: x509Server, client: x509Client)
        let aSession = try a.client.get()
        #expect(aSession.connectionSummary.hasPrefix("TLS1.2"), "\(aSession.connectionSummary)")
        try exchange(try a.server.get().session, aSession)

        let pskServer = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile),
                                                                    priority: TLSPriority.psk + ":-VERS-TLS1.3", handshakeTimeout: testHandshakeTimeout))
        let pskClient = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: pki.pskFile, username: "alice")))
        let b = handshake(server: pskServer, client: pskClient, hostname: nil)
        let bSession = try b.client.get()
        #expect(bSession.connectionSummary.hasPrefix("TLS1.2"), "\(bSession.connectionSummary)")
        #expect(try b.server.get().peerIdentity == "alice")
        try exchange(try b.server.get().session, bSession)
    }

    @Test("TLS 1.2: a wrong PSK key fails on both ends")
    func tls12WrongPSK() throws {
        let pki = try TestPKI()
        let scratch = Scratch()
        let wrong = try scratch.write("alice.psk", "alice:" + String(repeating: "cd", count: 32) + "\n")
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), priority: TLSPriority.psk + ":-VERS-TLS1.3", handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: wrong, username: "alice")))
        let result = handshake(server: server, client: client, hostname: nil)
        #expect(result.server.tlsError?.code == .psk, "\(String(describing: result.server.error))")
        #expect(result.client.error != nil)
    }

    @Test("a client trusting another CA refuses the server: signed by an unknown CA")
    func wrongCA() throws {
        let pki = try TestPKI(), other = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: other.directory)))
        let result = handshake(server: server, client: client)
        let error = try #require(result.client.tlsError)
        #expect(error.code == .untrustedPeer)
        #expect(error.message == "server certificate is not trusted: signed by an unknown CA")
        #expect(result.server.error != nil)
    }

    @Test("a certificate for another hostname is refused by name")
    func wrongHostname() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let result = handshake(server: server, client: client, hostname: "elsewhere.example")
        let error = try #require(result.client.tlsError)
        #expect(error.code == .untrustedPeer)
        #expect(error.message.contains("does not match hostname 'elsewhere.example'"), "\(error)")
    }

    @Test("tls-hostname overrides the connect name")
    func hostnameOverride() throws {
        let pki = try TestPKI(hostnames: ["nbd.example"], ipAddresses: [])
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory), hostnameOverride: "nbd.example"))
        let result = handshake(server: server, client: client, hostname: "127.0.0.1")
        #expect(result.client.error == nil, "\(String(describing: result.client.error))")
    }

    @Test("verification off accepts a server from another CA")
    func verifyPeerOff() throws {
        let pki = try TestPKI(), other = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), verifyPeer: false, handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: other.directory), verifyPeer: false))
        let result = handshake(server: server, client: client)
        #expect(result.client.error == nil, "\(String(describing: result.client.error))")
        #expect(result.server.error == nil)
    }

    @Test("an unknown PSK identity is named on the server")
    func unknownPSKIdentity() throws {
        let pki = try TestPKI()
        let scratch = Scratch()
        let bobFile = try scratch.write("bob.psk", "bob:" + String(repeating: "ab", count: 32) + "\n")
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: bobFile, username: "bob")))
        let result = handshake(server: server, client: client, hostname: nil)
        let error = try #require(result.server.tlsError)
        #expect(error.message == "unknown PSK identity 'bob'")
        let clientError = try #require(result.client.tlsError)
        #expect(clientError.code == .psk, "\(clientError)")
    }

    @Test("a wrong PSK key fails on both ends")
    func wrongPSKKey() throws {
        let pki = try TestPKI()
        let scratch = Scratch()
        let wrong = try scratch.write("alice.psk", "alice:" + String(repeating: "cd", count: 32) + "\n")
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: wrong, username: "alice")))
        let result = handshake(server: server, client: client, hostname: nil)
        let serverError = try #require(result.server.tlsError)
        let clientError = try #require(result.client.tlsError)
        #expect(serverError.code == .psk, "\(serverError)")
        #expect(serverError.message.contains("'alice'"), "\(serverError)")
        #expect(clientError.code == .psk, "\(clientError)")
    }

    @Test("a client without a certificate is refused by a verifying server, and told why")
    func missingClientCertificate() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: try pki.caOnlyDirectory())))
        let result = handshake(server: server, client: client)
        let serverError = try #require(result.server.tlsError)
        #expect(serverError.code == .missingPeerCertificate)
        #expect(serverError.message.contains("presented no certificate"))
        // TLS 1.3: the client may finish its handshake and learn only on its first read.
        let clientError: Error
        switch result.client {
        case let .failure(error): clientError = error
        case let .success(session):
            var byte = [UInt8](repeating: 0, count: 1)
            clientError = try #require(throws: TLSError.self) { try byte.withUnsafeMutableBytes { _ = try session.read(into: $0) } }
        }
        let tlsError = try #require(clientError as? TLSError)
        #expect(tlsError.message.contains("requires a client certificate"), "\(tlsError)")
    }

    @Test("a client certificate from another CA is refused by the server")
    func clientFromOtherCA() throws {
        let pki = try TestPKI(), other = try TestPKI()
        let clientDir = other.scratch.subdirectory("mixed")
        try FileManager.default.copyItem(atPath: "\(pki.directory)/ca-cert.pem", toPath: "\(clientDir)/ca-cert.pem")
        try FileManager.default.copyItem(atPath: "\(other.directory)/client-cert.pem", toPath: "\(clientDir)/client-cert.pem")
        try FileManager.default.copyItem(atPath: "\(other.directory)/client-key.pem", toPath: "\(clientDir)/client-key.pem")
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: clientDir)))
        let result = handshake(server: server, client: client)
        let serverError = try #require(result.server.tlsError)
        #expect(serverError.message == "client certificate is not trusted: signed by an unknown CA")
        let clientMessage = try firstFailure(result.client)
        #expect(clientMessage.contains("the server rejected our client certificate"), "\(clientMessage)")
    }

    @Test("an expired server certificate is refused as expired")
    func expiredServer() throws {
        let now = Int(Date().timeIntervalSince1970)
        let pki = try TestPKI(leafValidity: (now - 10 * 86400, now - 86400))
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), verifyPeer: false, handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let error = try #require(handshake(server: server, client: client).client.tlsError)
        #expect(error.message.contains("certificate expired"), "\(error)")
    }

    @Test("a not-yet-valid server certificate is refused as not yet valid")
    func notYetValidServer() throws {
        let now = Int(Date().timeIntervalSince1970)
        let pki = try TestPKI(leafValidity: (now + 86400, now + 10 * 86400))
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), verifyPeer: false, handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let error = try #require(handshake(server: server, client: client).client.tlsError)
        #expect(error.message.contains("not yet valid"), "\(error)")
    }

    @Test("a revoked client certificate is refused when ca-crl.pem lists it")
    func revokedClient() throws {
        let pki = try TestPKI()
        let ca = try Certificate.loadChain(fromFile: "\(pki.directory)/ca-cert.pem")[0]
        let caKey = try PrivateKey(pemFile: "\(pki.directory)/ca-key.pem")
        let clientCert = try Certificate.loadChain(fromFile: "\(pki.directory)/client-cert.pem")[0]
        let crl = try RevocationList(revoking: [clientCert], authority: ca, authorityKey: caKey, thisUpdate: Int(Date().timeIntervalSince1970) - 60)
        try crl.pemEncoded().write(toFile: "\(pki.directory)/ca-crl.pem", atomically: true, encoding: .utf8)
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: testHandshakeTimeout))
        let serverDir = pki.scratch.subdirectory("client-view")
        for name in ["ca-cert.pem", "client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(pki.directory)/\(name)", toPath: "\(serverDir)/\(name)")
        }
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: serverDir)))
        let result = handshake(server: server, client: client)
        let error = try #require(result.server.tlsError)
        #expect(error.message.contains("certificate revoked"), "\(error)")
    }

    @Test("DN authorization admits the listed client in either attribute order and refuses others")
    func dnAuthorization() throws {
        let pki = try TestPKI(clientName: "laptop")
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        for allowed in ["CN=laptop,O=SwiftNBD", "O=SwiftNBD,CN=laptop"] {
            let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory),
                                                                     authorizedDNs: try DNAuthorizationList(parsing: [allowed]), handshakeTimeout: testHandshakeTimeout))
            let outcome = try handshake(server: server, client: client).server.get()
            #expect(outcome.refusal == nil, "\(allowed)")
        }
        let strict = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory),
                                                                 authorizedDNs: try DNAuthorizationList(parsing: ["CN=desktop,O=SwiftNBD"]), handshakeTimeout: testHandshakeTimeout))
        let outcome = try handshake(server: strict, client: client).server.get()
        #expect(outcome.refusal == "client certificate DN 'CN=laptop,O=SwiftNBD' is not authorized")
    }

    @Test("DN authorization handles an escaped comma in the client's name")
    func dnWithComma() throws {
        let pki = try TestPKI(clientName: "Smith, John")
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: pki.directory)))
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory),
                                                                 authorizedDNs: try DNAuthorizationList(parsing: [#"O=SwiftNBD,CN=Smith\, John"#]), handshakeTimeout: testHandshakeTimeout))
        let outcome = try handshake(server: server, client: client).server.get()
        #expect(outcome.peerIdentity == #"CN=Smith\, John,O=SwiftNBD"#)
        #expect(outcome.refusal == nil)
    }

    @Test("a client that never speaks TLS times out the handshake")
    func handshakeTimeout() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: 0.3))
        let (serverSocket, clientSocket) = socketPair()
        defer { clientSocket.close() }
        let error = try #require(throws: TLSError.self) { try server.accept(on: serverSocket) }
        #expect(error.code == .timedOut)
        #expect(error.message.contains("did not finish within"))
    }

    @Test("plaintext NBD options after STARTTLS are never taken as TLS")
    func plaintextAfterStartTLS() throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory), handshakeTimeout: 5))
        let (serverSocket, clientSocket) = socketPair()
        defer { clientSocket.close() }
        // IHAVEOPT + NBD_OPT_LIST, as a confused or malicious client would pipeline it.
        try clientSocket.write([0x49, 0x48, 0x41, 0x56, 0x45, 0x4F, 0x50, 0x54, 0, 0, 0, 3, 0, 0, 0, 0])
        let error = try #require(throws: TLSError.self) { try server.accept(on: serverSocket) }
        #expect(error.code == .handshake, "\(error)")
    }

    @Test("multi-part writes of every size arrive intact and in order", arguments: [
        [1], [16, 0, 5], [16, 16368], [16, 16369], [16, 16368, 16], [16, 100_000, 16], [40_000, 3], [16384, 1, 16384],
    ])
    func multiPartWrites(sizes: [Int]) throws {
        let pki = try TestPKI()
        let server = try TLSServerContext(TLSServerConfiguration(credentials: .psk(keyFile: pki.pskFile), handshakeTimeout: testHandshakeTimeout))
        let client = try TLSClientContext(TLSClientConfiguration(credentials: .psk(keyFile: pki.pskFile, username: "alice")))
        let result = handshake(server: server, client: client, hostname: nil)
        let sender = try result.server.get().session, receiver = try result.client.get()
        var seed: UInt8 = 1
        let parts: [[UInt8]] = sizes.map { size in seed &+= 37; return (0..<size).map { UInt8(truncatingIfNeeded: $0) &+ seed } }
        try withBuffers(parts) { try sender.write($0) }
        #expect(try receiver.readExactly(count: sizes.reduce(0, +)) == parts.flatMap { $0 })
    }

    private func withBuffers(_ parts: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) throws -> Void) throws {
        func nest(_ index: Int, _ acc: [UnsafeRawBufferPointer]) throws {
            if index == parts.count { return try body(acc) }
            try parts[index].withUnsafeBytes { try nest(index + 1, acc + [$0]) }
        }
        try nest(0, [])
    }

    private func exchange(_ server: TLSSession, _ client: TLSSession) throws {
        let header: [UInt8] = Array(0..<16)
        let payload = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try header.withUnsafeBytes { h in try payload.withUnsafeBytes { p in try server.write([h, p]) } }
        let received = try client.readExactly(count: header.count + payload.count)
        #expect(received == header + payload)
        try client.write(Array("ping".utf8))
        #expect(try server.readExactly(count: 4) == Array("ping".utf8))
    }

    private func firstFailure(_ result: Result<TLSSession, Error>) throws -> String {
        switch result {
        case let .failure(error): return "\(error)"
        case let .success(session):
            var byte = [UInt8](repeating: 0, count: 1)
            do {
                let n = try byte.withUnsafeMutableBytes { try session.read(into: $0) }
                return "read returned \(n)"
            } catch { return "\(error)" }
        }
    }
}
