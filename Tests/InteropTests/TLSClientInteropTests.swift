import Foundation
import NBDClient
import Testing

/// Our client (`swiftnbd info`) over TLS against qemu-nbd and nbdkit, including every
/// refusal it must produce with a clear sentence.
@Suite("TLS: swiftnbd client against qemu-nbd and nbdkit", .serialized, .noLeftoverProcesses)
struct TLSClientInteropTests {
    static let imageSize = 3 << 20

    private func qemuNBD(_ creds: TLSCredentials, object: String, extra: [String] = [],
                         qemu: QEMUGeneration) throws -> (ServerProcess, Int) {
        let image = creds.scratch.file("disk-\(UUID().uuidString.prefix(4)).raw")
        try makePatternFile(image, size: Self.imageSize, seed: 5)
        let port = FreePort.next()
        let server = try startTLSPeer([qemu.nbd, "--object", object, "--tls-creds", "tls0"] + extra +
                                      ["-f", "raw", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t", image], port: port)
        return (server, port)
    }

    private func nbdkit(_ creds: TLSCredentials, _ tlsArgs: [String]) throws -> (ServerProcess, Int) {
        let image = creds.scratch.file("kit-\(UUID().uuidString.prefix(4)).raw")
        try makePatternFile(image, size: Self.imageSize, seed: 6)
        let port = FreePort.next()
        let server = try startTLSPeer(["nbdkit", "-f", "-v", "-i", "127.0.0.1", "-p", "\(port)"] + tlsArgs + ["file", image], port: port)
        return (server, port)
    }

    private func info(_ uri: String) throws -> RunResult {
        try run([Peers.swiftnbd, "info", uri], timeout: 60)
    }

    @Test("x509 with a client certificate against qemu-nbd, by IP address and by name",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func qemuX509(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"), qemu: qemu)
        defer { server.stop() }
        let client = try creds.clientDirectory()
        for host in ["127.0.0.1", "localhost"] {
            let result = try info("nbds://\(host):\(port)/disk?tls-certificates=\(client)")
            #expect(result.succeeded, "\(result)\n\(server.log)")
            #expect(result.stdout.contains("\(Self.imageSize)"), "\(result)")
            #expect(result.stdout.contains(qemu.clientNegotiatedLine), "\(result)")
        }
    }

    @Test("PSK against qemu-nbd", .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func qemuPSK(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.psk(dir: try creds.pskDirectory(), endpoint: "server"), qemu: qemu)
        defer { server.stop() }
        let result = try info("nbds://alice@127.0.0.1:\(port)/disk?tls-psk-file=\(creds.pskFile)")
        #expect(result.succeeded, "\(result)\n\(server.log)")
        #expect(result.stdout.contains("\(Self.imageSize)"))
    }

    @Test("x509 against nbdkit --tls=require --tls-verify-peer, and PSK against nbdkit --tls-psk",
          .enabled(if: Peers.available("nbdkit")))
    func nbdkitBoth() throws {
        let creds = try TLSCredentials()
        let (x509, x509Port) = try nbdkit(creds, ["--tls=require", "--tls-certificates=\(try creds.serverDirectory())", "--tls-verify-peer"])
        defer { x509.stop() }
        let a = try info("nbds://localhost:\(x509Port)/?tls-certificates=\(try creds.clientDirectory())")
        #expect(a.succeeded, "\(a)\n\(x509.log)")
        let (psk, pskPort) = try nbdkit(creds, ["--tls=require", "--tls-psk=\(creds.pskFile)"])
        defer { psk.stop() }
        let b = try info("nbds://alice@127.0.0.1:\(pskPort)/?tls-psk-file=\(creds.pskFile)")
        #expect(b.succeeded, "\(b)\n\(psk.log)")
    }

    @Test("a client trusting another CA refuses qemu-nbd: signed by an unknown CA",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func wrongCA(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials(), other = try TLSCredentials(label: "other")
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"), qemu: qemu)
        defer { server.stop() }
        let result = try info("nbds://127.0.0.1:\(port)/disk?tls-certificates=\(try other.clientDirectory())")
        #expect(!result.succeeded)
        #expect(result.stderr.contains("server certificate is not trusted: signed by an unknown CA"), "\(result)")
    }

    @Test("tls-verify-peer=false accepts a server from another CA (explicit opt-out)",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func verifyPeerOptOut(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials(), other = try TLSCredentials(label: "other")
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server", verifyPeer: false), qemu: qemu)
        defer { server.stop() }
        let result = try info("nbds://127.0.0.1:\(port)/disk?tls-certificates=\(try other.clientDirectory(withClientCertificate: false))&tls-verify-peer=false")
        #expect(result.succeeded, "\(result)\n\(server.log)")
    }

    @Test("a name the server certificate does not carry is refused",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func hostnameMismatch(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"), qemu: qemu)
        defer { server.stop() }
        let result = try info("nbds://127.0.0.1:\(port)/disk?tls-certificates=\(try creds.clientDirectory())&tls-hostname=wrong.example")
        #expect(!result.succeeded)
        #expect(result.stderr.contains("server certificate does not match hostname 'wrong.example'"), "\(result)")
    }

    @Test("without a client certificate qemu-nbd refuses us and we say so",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func noClientCertificate(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let (server, port) = try qemuNBD(creds, object: QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"), qemu: qemu)
        defer { server.stop() }
        let result = try info("nbds://127.0.0.1:\(port)/disk?tls-certificates=\(try creds.clientDirectory(withClientCertificate: false))")
        #expect(!result.succeeded)
        #expect(result.stderr.contains("the server requires a client certificate and none is configured"), "\(result)\n\(server.log)")
    }

    @Test("a client certificate from another CA is rejected by nbdkit and reported as such",
          .enabled(if: Peers.available("nbdkit")))
    func foreignClientCertificate() throws {
        let creds = try TLSCredentials(), other = try TLSCredentials(label: "other")
        let mixed = creds.scratch.file("mixed")
        try FileManager.default.createDirectory(atPath: mixed, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(creds.directory)/ca-cert.pem", toPath: "\(mixed)/ca-cert.pem")
        for file in ["client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(other.directory)/\(file)", toPath: "\(mixed)/\(file)")
        }
        let (server, port) = try nbdkit(creds, ["--tls=require", "--tls-certificates=\(try creds.serverDirectory())", "--tls-verify-peer"])
        defer { server.stop() }
        let result = try info("nbds://localhost:\(port)/?tls-certificates=\(mixed)")
        #expect(!result.succeeded)
        #expect(result.stderr.contains("the server rejected our client certificate"), "\(result)\n\(server.log)")
    }

    @Test("PSK: an identity nbdkit does not know, and a wrong key, both fail clearly",
          .enabled(if: Peers.available("nbdkit")))
    func pskFailures() throws {
        let creds = try TLSCredentials()
        let (server, port) = try nbdkit(creds, ["--tls=require", "--tls-psk=\(creds.pskFile)"])
        defer { server.stop() }
        let bobFile = creds.scratch.file("bob.psk")
        try ("bob:" + String(repeating: "ab", count: 32) + "\n").write(toFile: bobFile, atomically: true, encoding: .utf8)
        let unknown = try info("nbds://bob@127.0.0.1:\(port)/?tls-psk-file=\(bobFile)")
        #expect(!unknown.succeeded)
        #expect(unknown.stderr.contains("'bob'"), "\(unknown)\n\(server.log)")
        let wrongFile = creds.scratch.file("wrong.psk")
        try ("alice:" + String(repeating: "cd", count: 32) + "\n").write(toFile: wrongFile, atomically: true, encoding: .utf8)
        let wrong = try info("nbds://alice@127.0.0.1:\(port)/?tls-psk-file=\(wrongFile)")
        #expect(!wrong.succeeded)
        #expect(wrong.stderr.contains("PSK"), "\(wrong)\n\(server.log)")
    }

    @Test("a TLS-requiring client refuses nbdkit --tls=off before naming any export",
          .enabled(if: Peers.available("nbdkit")))
    func requireAgainstPlaintextServer() throws {
        let creds = try TLSCredentials()
        let (server, port) = try nbdkit(creds, ["--tls=off"])
        defer { server.stop() }
        let result = try info("nbds://localhost:\(port)/secret?tls-certificates=\(try creds.clientDirectory())")
        #expect(!result.succeeded)
        #expect(result.stderr.lowercased().contains("tls"), "\(result)")
        server.stop()
        let log = server.log
        #expect(log.contains("STARTTLS"), "\(log)")
        for option in ["NBD_OPT_GO", "NBD_OPT_INFO", "NBD_OPT_EXPORT_NAME", "NBD_OPT_LIST", "NBD_OPT_STRUCTURED_REPLY"] {
            #expect(!log.contains(option), "sent \(option) to a server that refused TLS:\n\(log)")
        }
    }

    @Test("a TLS-requiring client refuses an oldstyle server (nbdkit --oldstyle)",
          .enabled(if: Peers.available("nbdkit")))
    func requireAgainstOldstyle() throws {
        let creds = try TLSCredentials()
        let (server, port) = try nbdkit(creds, ["--oldstyle"])
        defer { server.stop() }
        let result = try info("nbds://localhost:\(port)/?tls-certificates=\(try creds.clientDirectory())")
        #expect(!result.succeeded)
        #expect(result.stderr.lowercased().contains("tls") || result.stderr.contains("oldstyle"), "\(result)")
    }

    @Test("a server that stalls after STARTTLS is given up on at the handshake timeout, not thousands of timeouts later",
          .enabled(if: Peers.available("nbdkit")), .timeLimit(.minutes(1)))
    func stalledAfterStartTLS() throws {
        let creds = try TLSCredentials()
        // delay-open holds the reply to NBD_OPT_GO for 40 s, inside the TLS session.
        let port = FreePort.next()
        let server = try startTLSPeer(["nbdkit", "-f", "-i", "127.0.0.1", "-p", "\(port)", "--tls=require",
                                       "--tls-certificates=\(try creds.serverDirectory())", "--filter=delay",
                                       "memory", "1M", "delay-open=40"], port: port)
        defer { server.stop() }
        let uri = try NBDURI("nbds://localhost:\(port)/?tls-certificates=\(try creds.clientDirectory())")
        let started = Date()
        do {
            let connection = try NBDConnection.connect(uri) { $0.handshakeTimeout = 2 }
            connection.close()
            Issue.record("the handshake with a stalled server succeeded")
        } catch let error as NBDClientError {
            #expect(error.description.contains("in time"), "\(error)")
        }
        let elapsed = Date().timeIntervalSince(started)
        #expect(elapsed < 15, "gave up after \(elapsed) s")
    }
}
