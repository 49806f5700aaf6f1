import Foundation
import NBDTLS
import Testing

/// `swiftnbd serve` over TLS with the real clients (qemu-img, qemu-io, nbdinfo, nbdcopy),
/// data checked byte for byte, and every refusal checked on both ends.
@Suite("TLS: swiftnbd serve with qemu and libnbd clients", .serialized, .noLeftoverProcesses)
struct TLSServerInteropTests {
    private func imageOpts(_ serve: TLSServe, host: String = "127.0.0.1") -> String {
        QEMUTLS.nbdImageOpts(port: serve.port, export: "disk", host: host)
    }

    /// `qemu-img info` of the export with QEMU's x509 client credentials from `clientDirectory`.
    private func qemuImgInfo(_ serve: TLSServe, clientDirectory: String, qemu: QEMUGeneration) throws -> RunResult {
        try run([qemu.img, "info", "--object", QEMUTLS.x509(dir: clientDirectory, endpoint: "client"),
                 "--image-opts", imageOpts(serve)])
    }

    private func fileBytes(_ path: String, _ range: Range<Int>) throws -> [UInt8] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return Array(data[range])
    }

    @Test("qemu-img reads the export over x509 with a client certificate, byte for byte; qemu-io writes through it",
          .enabled(if: Peers.available("qemu-img", "qemu-io")), arguments: QEMUGeneration.all)
    func qemuX509(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let copy = creds.scratch.file("copy.raw")
        let object = QEMUTLS.x509(dir: try creds.clientDirectory(), endpoint: "client")
        let read = try run([qemu.img, "convert", "-O", "raw", "--object", object, "--image-opts", imageOpts(serve), copy])
        #expect(read.succeeded, "\(read)\n\(serve.log)")
        #expect(filesEqual(serve.image, copy))
        let write = try run([qemu.io, "--object", object, "--image-opts", imageOpts(serve, host: "localhost"),
                             "-c", "write -P 0xab 65536 65536", "-c", "read -P 0xab 65536 65536", "-c", "flush"])
        #expect(write.succeeded && !write.stdout.contains("Pattern verification failed"), "\(write)\n\(serve.log)")
        #expect(try fileBytes(serve.image, 65536..<131072) == [UInt8](repeating: 0xab, count: 65536))
        #expect(serve.log.contains(qemu.serverLogReplyForm), "\(serve.log)")
    }

    @Test("qemu-img reads over PSK with username alice, byte for byte",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func qemuPSK(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-psk", creds.pskFile])
        defer { serve.stop() }
        let copy = creds.scratch.file("copy.raw")
        let result = try run([qemu.img, "convert", "-O", "raw", "--object", QEMUTLS.psk(dir: try creds.pskDirectory(), endpoint: "client", username: "alice"),
                              "--image-opts", imageOpts(serve), copy])
        #expect(result.succeeded, "\(result)\n\(serve.log)")
        #expect(filesEqual(serve.image, copy))
    }

    @Test("nbdcopy copies out and back in over nbds:// with certificates; nbdinfo over PSK",
          .enabled(if: Peers.available("nbdcopy", "nbdinfo")))
    func libnbdClients() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let client = try creds.clientDirectory()
        let uri = "nbds://localhost:\(serve.port)/disk?tls-certificates=\(client)"
        let copy = creds.scratch.file("copy.raw")
        let out = try run(["nbdcopy", uri, copy])
        #expect(out.succeeded, "\(out)\n\(serve.log)")
        #expect(filesEqual(serve.image, copy))
        let upload = creds.scratch.file("upload.raw")
        try makePatternFile(upload, size: TLSServe.imageSize, seed: 77)
        let back = try run(["nbdcopy", upload, uri])
        #expect(back.succeeded, "\(back)\n\(serve.log)")
        #expect(filesEqual(serve.image, upload))
        serve.stop()

        let pskServe = try TLSServe(creds.scratch, tls: ["--tls-psk", creds.pskFile])
        defer { pskServe.stop() }
        let info = try run(["nbdinfo", "nbds://alice@127.0.0.1:\(pskServe.port)/disk?tls-psk-file=\(creds.pskFile)"])
        #expect(info.succeeded, "\(info)\n\(pskServe.log)")
        #expect(info.stdout.contains("\(TLSServe.imageSize)"), "\(info)")
        let pskCopy = creds.scratch.file("psk-copy.raw")
        let viaPSK = try run(["nbdcopy", "nbds://alice@127.0.0.1:\(pskServe.port)/disk?tls-psk-file=\(creds.pskFile)", pskCopy])
        #expect(viaPSK.succeeded, "\(viaPSK)\n\(pskServe.log)")
        #expect(filesEqual(pskServe.image, pskCopy))
    }

    @Test("qemu-nbd -L lists the exports over TLS (LIST only after STARTTLS in require mode)",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func qemuList(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let result = try run([qemu.nbd, "-L", "-b", "127.0.0.1", "-p", "\(serve.port)",
                              "--object", QEMUTLS.x509(dir: try creds.clientDirectory(), endpoint: "client"), "--tls-creds", "tls0"])
        #expect(result.succeeded, "\(result)\n\(serve.log)")
        #expect(result.stdout.contains("export: 'disk'"), "\(result)")
        let plaintext = try run([qemu.nbd, "-L", "-b", "127.0.0.1", "-p", "\(serve.port)"])
        #expect(!plaintext.stdout.contains("export: 'disk'"), "exports listed without TLS: \(plaintext)")
    }

    @Test("our client reads our server over x509 and PSK")
    func ourClient() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let a = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(a.succeeded && a.stdout.contains("\(TLSServe.imageSize)"), "\(a)\n\(serve.log)")
        let pskServe = try TLSServe(creds.scratch, tls: ["--tls-psk", creds.pskFile])
        defer { pskServe.stop() }
        let b = try run([Peers.swiftnbd, "info", "nbds://alice@127.0.0.1:\(pskServe.port)/disk?tls-psk-file=\(creds.pskFile)"])
        #expect(b.succeeded && b.stdout.contains("\(TLSServe.imageSize)"), "\(b)\n\(pskServe.log)")
    }

    @Test("a plaintext client is refused by a TLS-requiring server",
          .enabled(if: Peers.available("qemu-img", "nbdinfo")), arguments: QEMUGeneration.all)
    func plaintextRefused(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let refused = try run([qemu.img, "info", "nbd://127.0.0.1:\(serve.port)/disk"])
        #expect(!refused.succeeded)
        #expect(refused.stderr.contains("TLS"), "\(refused)")
        let libnbd = try run(["nbdinfo", "nbd://127.0.0.1:\(serve.port)/disk"])
        #expect(!libnbd.succeeded, "\(libnbd)")
    }

    @Test("a client trusting another CA refuses our server, and the server logs the rejection",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func clientTrustsOtherCA(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials(), other = try TLSCredentials(label: "other")
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--no-tls-verify-peer"])
        defer { serve.stop() }
        let result = try qemuImgInfo(serve, clientDirectory: try other.clientDirectory(withClientCertificate: false), qemu: qemu)
        #expect(!result.succeeded, "\(result)")
        #expect(result.stderr.contains("known issuer"), "\(result)")
        // QEMU checks the chain after the handshake and just closes; GnuTLS clients (ours)
        // reject inside the handshake with an alert the server can name.
        let ours = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try other.clientDirectory(withClientCertificate: false, name: "ours"))"])
        #expect(!ours.succeeded)
        #expect(ours.stderr.contains("server certificate is not trusted: signed by an unknown CA"), "\(ours)")
        serve.stop()
        #expect(serve.log.contains("the client rejected the server certificate"), "\(serve.log)")
    }

    @Test("a client without a certificate is refused and the server says why",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func noClientCertificate(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let result = try qemuImgInfo(serve, clientDirectory: try creds.clientDirectory(withClientCertificate: false), qemu: qemu)
        #expect(!result.succeeded, "\(result)")
        serve.stop()
        #expect(serve.log.contains("presented no certificate"), "\(serve.log)")
    }

    @Test("--no-tls-verify-peer admits a client without a certificate",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func verifyPeerOff(qemu: QEMUGeneration) throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--no-tls-verify-peer"])
        defer { serve.stop() }
        let result = try qemuImgInfo(serve, clientDirectory: try creds.clientDirectory(withClientCertificate: false), qemu: qemu)
        #expect(result.succeeded, "\(result)\n\(serve.log)")
    }

    @Test("--tls-authz admits the listed DN in either order and refuses others with the reason",
          .enabled(if: Peers.available("nbdinfo")))
    func dnAuthorization() throws {
        let creds = try TLSCredentials(clientName: "laptop")
        let client = try creds.clientDirectory()
        for allowed in ["CN=laptop,O=SwiftNBD", "O=SwiftNBD,CN=laptop"] {
            let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--tls-authz", allowed])
            defer { serve.stop() }
            let ok = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(client)"])
            #expect(ok.succeeded, "\(allowed): \(ok)\n\(serve.log)")
        }
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--tls-authz", "CN=desktop,O=SwiftNBD"])
        defer { serve.stop() }
        let denied = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(client)"])
        // libnbd 1.14 reports ERR_POLICY without the server's text; the server log has it.
        #expect(!denied.succeeded, "\(denied)")
        let ours = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(client)"])
        #expect(!ours.succeeded)
        #expect(ours.stderr.contains("client certificate DN 'CN=laptop,O=SwiftNBD' is not authorized"), "\(ours)")
        serve.stop()
        #expect(serve.log.contains("client certificate DN 'CN=laptop,O=SwiftNBD' is not authorized"), "\(serve.log)")
    }

    @Test("PSK: an unknown identity and a wrong key are refused and named in the server log",
          .enabled(if: Peers.available("nbdinfo")))
    func pskRefusals() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-psk", creds.pskFile])
        defer { serve.stop() }
        let bobFile = creds.scratch.file("bob.psk")
        try ("bob:" + String(repeating: "ab", count: 32) + "\n").write(toFile: bobFile, atomically: true, encoding: .utf8)
        let unknown = try run(["nbdinfo", "nbds://bob@127.0.0.1:\(serve.port)/disk?tls-psk-file=\(bobFile)"])
        #expect(!unknown.succeeded)
        let wrongFile = creds.scratch.file("wrong.psk")
        try ("alice:" + String(repeating: "cd", count: 32) + "\n").write(toFile: wrongFile, atomically: true, encoding: .utf8)
        let wrong = try run(["nbdinfo", "nbds://alice@127.0.0.1:\(serve.port)/disk?tls-psk-file=\(wrongFile)"])
        #expect(!wrong.succeeded)
        let ours = try run([Peers.swiftnbd, "info", "nbds://bob@127.0.0.1:\(serve.port)/disk?tls-psk-file=\(bobFile)"])
        #expect(!ours.succeeded && ours.stderr.contains("'bob'"), "\(ours)")
        serve.stop()
        #expect(serve.log.contains("unknown PSK identity 'bob'"), "\(serve.log)")
        #expect(serve.log.contains("PSK key for identity 'alice' does not match"), "\(serve.log)")
    }

    @Test("expired and not-yet-valid server certificates are refused by qemu-img and by our client",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func expiredServerCertificates(qemu: QEMUGeneration) throws {
        for (flag, words) in [("--expired", "expired"), ("--not-yet-valid", "not yet valid")] {
            let creds = try TLSCredentials(label: "dates", extra: [flag])
            let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--no-tls-verify-peer"])
            defer { serve.stop() }
            let refused = try qemuImgInfo(serve, clientDirectory: try creds.clientDirectory(), qemu: qemu)
            #expect(!refused.succeeded, "\(flag): \(refused)")
            let ours = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory(name: "ours"))"])
            #expect(!ours.succeeded)
            #expect(ours.stderr.contains(words), "\(flag): \(ours)")
        }
    }

    @Test("an expired client certificate is refused by our server",
          .enabled(if: Peers.available("nbdinfo")))
    func expiredClientCertificate() throws {
        let good = try TLSCredentials()
        let expired = try TLSCredentials(label: "expired", extra: ["--expired"])
        // Server with the good PKI's server pair but trusting the expired PKI's CA for clients.
        let serverDir = good.scratch.file("mixed-server")
        try FileManager.default.createDirectory(atPath: serverDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(expired.directory)/ca-cert.pem", toPath: "\(serverDir)/ca-cert.pem")
        for file in ["server-cert.pem", "server-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(good.directory)/\(file)", toPath: "\(serverDir)/\(file)")
        }
        let clientDir = good.scratch.file("mixed-client")
        try FileManager.default.createDirectory(atPath: clientDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(good.directory)/ca-cert.pem", toPath: "\(clientDir)/ca-cert.pem")
        for file in ["client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(expired.directory)/\(file)", toPath: "\(clientDir)/\(file)")
        }
        let serve = try TLSServe(good.scratch, tls: ["--tls-certificates", serverDir])
        defer { serve.stop() }
        let result = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(clientDir)"])
        #expect(!result.succeeded)
        serve.stop()
        #expect(serve.log.contains("certificate expired"), "\(serve.log)")
    }

    @Test("a revoked client certificate is refused when ca-crl.pem lists it",
          .enabled(if: Peers.available("nbdinfo", "certtool")))
    func revokedClientCertificate() throws {
        let creds = try TLSCredentials()
        try creds.revokeClientCertificate()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let result = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(!result.succeeded, "\(result)")
        serve.stop()
        #expect(serve.log.contains("certificate revoked"), "\(serve.log)")
    }

    @Test("STARTTLS and plaintext options in one write: the options are never processed as NBD")
    func pipelinedPlaintextAfterStartTLS() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory])
        defer { serve.stop() }
        let raw = try RawNBDClient(port: serve.port)
        defer { raw.close() }
        _ = try raw.greet()
        try raw.send(RawNBDClient.optionBytes(.startTLS) + RawNBDClient.optionBytes(.list) + RawNBDClient.optionBytes(.go, RawNBDClient.be32(4) + Array("disk".utf8) + [0, 0]))
        let ack = try raw.readOptionReply()
        #expect(ack.option == 5 && ack.type == RawNBDClient.repAck)
        // Whatever follows is TLS (an alert) or nothing: never an NBD option reply.
        var rest: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100 {
            let n = try buffer.withUnsafeMutableBytes { try raw.socket.read(into: $0) }
            if n == 0 { break }
            rest += buffer[..<n]
        }
        let replyMagic = RawNBDClient.be64(RawNBDClient.replyMagic)
        let containsReply = rest.count >= 8 && (0...(rest.count - 8)).contains { Array(rest[$0..<$0 + 8]) == replyMagic }
        #expect(!containsReply, "the server answered plaintext options after STARTTLS: \(rest)")
        if let first = rest.first { #expect(first == 0x15, "expected a TLS alert record, got \(rest.prefix(8))") }
        // The server is still healthy.
        let info = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(info.succeeded, "\(info)\n\(serve.log)")
    }

    @Test("structured replies negotiated before STARTTLS are forgotten after it")
    func structuredRepliesForgotten() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls", "on", "--tls-certificates", creds.directory])
        defer { serve.stop() }
        let raw = try RawNBDClient(port: serve.port)
        defer { raw.close() }
        _ = try raw.greet()
        try raw.send(RawNBDClient.optionBytes(.structuredReply))
        let sr = try raw.readOptionReply()
        #expect(sr.option == 8 && sr.type == RawNBDClient.repAck, "plaintext STRUCTURED_REPLY in --tls on mode: \(sr)")
        try raw.send(RawNBDClient.optionBytes(.startTLS))
        let ack = try raw.readOptionReply()
        #expect(ack.type == RawNBDClient.repAck)
        try raw.startTLS(try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: try creds.clientDirectory()))))
        let (size, _) = try raw.go("disk")
        #expect(size == UInt64(TLSServe.imageSize))
        #expect(try raw.readCommandReplyMagic(offset: 0, length: 4096) == RawNBDClient.simpleReplyMagic,
                "a structured reply after STARTTLS although the client never asked inside TLS")
    }

    @Test("a stalled TLS handshake neither blocks other clients nor lives past the timeout")
    func stalledHandshake() throws {
        let creds = try TLSCredentials()
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", creds.directory, "--tls-handshake-timeout", "2"])
        defer { serve.stop() }
        let raw = try RawNBDClient(port: serve.port)
        defer { raw.close() }
        _ = try raw.greet()
        try raw.send(RawNBDClient.optionBytes(.startTLS))
        #expect(try raw.readOptionReply().type == RawNBDClient.repAck)
        // Say nothing: the server waits for our ClientHello. Others must still get through.
        let info = try run([Peers.swiftnbd, "info", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory())"], timeout: 30)
        #expect(info.succeeded, "\(info)\n\(serve.log)")
        // The server gives up on us (the read returns EOF or an alert, bounded by SO_RCVTIMEO).
        var buffer = [UInt8](repeating: 0, count: 64)
        var ended = false
        for _ in 0..<10 {
            let n = try buffer.withUnsafeMutableBytes { try raw.socket.read(into: $0) }
            if n == 0 { ended = true; break }
        }
        #expect(ended, "the server kept a stalled handshake open")
    }

    @Test("--tls on: a TLS-only export needs STARTTLS while the other is served in plaintext",
          .enabled(if: Peers.available("nbdinfo")))
    func tlsOnlyExport() throws {
        let creds = try TLSCredentials()
        let secret = creds.scratch.file("secret.raw")
        try makePatternFile(secret, size: 1 << 20, seed: 4)
        let serve = try TLSServe(creds.scratch, tls: ["--tls", "on", "--tls-certificates", creds.directory],
                                 extraExports: [("secret", secret + ",tls-only")])
        defer { serve.stop() }
        let plainPublic = try run(["nbdinfo", "nbd://127.0.0.1:\(serve.port)/disk"])
        #expect(plainPublic.succeeded, "\(plainPublic)\n\(serve.log)")
        let plainSecret = try run(["nbdinfo", "nbd://127.0.0.1:\(serve.port)/secret"])
        #expect(!plainSecret.succeeded, "\(plainSecret)")
        let tlsSecret = try run(["nbdinfo", "nbds://localhost:\(serve.port)/secret?tls-certificates=\(try creds.clientDirectory())"])
        #expect(tlsSecret.succeeded, "\(tlsSecret)\n\(serve.log)")
    }

    @Test("a session established before SIGHUP keeps working after the credentials change")
    func sessionSurvivesReload() throws {
        let old = try TLSCredentials(label: "old"), new = try TLSCredentials(label: "new")
        let live = old.scratch.file("live")
        try FileManager.default.copyItem(atPath: old.directory, toPath: live)
        let serve = try TLSServe(old.scratch, tls: ["--tls-certificates", live])
        defer { serve.stop() }
        let raw = try RawNBDClient(port: serve.port)
        defer { raw.close() }
        _ = try raw.greet()
        try raw.send(RawNBDClient.optionBytes(.startTLS))
        #expect(try raw.readOptionReply().type == RawNBDClient.repAck)
        try raw.startTLS(try TLSClientContext(TLSClientConfiguration(credentials: .x509(directory: try old.clientDirectory()))))
        _ = try raw.go("disk")
        #expect(try raw.readCommandReplyMagic(offset: 0, length: 512) == RawNBDClient.simpleReplyMagic)
        _ = try raw.stream.readExactly(count: 12 + 512)
        for file in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
            try FileManager.default.removeItem(atPath: "\(live)/\(file)")
            try FileManager.default.copyItem(atPath: "\(new.directory)/\(file)", toPath: "\(live)/\(file)")
        }
        kill(serve.process.pid, SIGHUP)
        var reloaded = false
        for _ in 0..<50 where !reloaded { usleep(100_000); reloaded = serve.log.contains("TLS credentials reloaded") }
        #expect(reloaded, "\(serve.log)")
        #expect(try raw.readCommandReplyMagic(offset: 4096, length: 512) == RawNBDClient.simpleReplyMagic, "\(serve.log)")
        let data = try raw.stream.readExactly(count: 12 + 512)
        #expect(RawNBDClient.u32(data, 0) == 0, "READ failed after reload")
        let expected = try Data(contentsOf: URL(fileURLWithPath: serve.image))[4096..<4608]
        #expect(Array(data[12...]) == Array(expected))
    }

    @Test("SIGHUP with broken credentials keeps the old ones and says so",
          .enabled(if: Peers.available("nbdinfo")))
    func sighupBrokenCredentials() throws {
        let creds = try TLSCredentials()
        let live = creds.scratch.file("live")
        try FileManager.default.copyItem(atPath: creds.directory, toPath: live)
        let serve = try TLSServe(creds.scratch, tls: ["--tls-certificates", live])
        defer { serve.stop() }
        try "garbage\n".write(toFile: "\(live)/server-cert.pem", atomically: true, encoding: .utf8)
        kill(serve.process.pid, SIGHUP)
        var logged = false
        for _ in 0..<50 where !logged {
            usleep(100_000)
            logged = serve.log.contains("keeping the old ones")
        }
        #expect(logged, "\(serve.log)")
        #expect(serve.log.contains("server-cert.pem"), "the reload error does not name the file: \(serve.log)")
        let still = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(still.succeeded, "\(still)\n\(serve.log)")
    }

    @Test("SIGHUP reloads the certificates for new connections",
          .enabled(if: Peers.available("nbdinfo")))
    func sighupReload() throws {
        let old = try TLSCredentials(label: "old"), new = try TLSCredentials(label: "new")
        let live = old.scratch.file("live")
        try FileManager.default.copyItem(atPath: old.directory, toPath: live)
        let serve = try TLSServe(old.scratch, tls: ["--tls-certificates", live])
        defer { serve.stop() }
        let before = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try old.clientDirectory())"])
        #expect(before.succeeded, "\(before)\n\(serve.log)")
        for file in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
            try FileManager.default.removeItem(atPath: "\(live)/\(file)")
            try FileManager.default.copyItem(atPath: "\(new.directory)/\(file)", toPath: "\(live)/\(file)")
        }
        kill(serve.process.pid, SIGHUP)
        var reloaded = false
        for _ in 0..<50 where !reloaded {
            usleep(100_000)
            reloaded = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try new.clientDirectory(name: "c\(UUID().uuidString.prefix(4))"))"]).succeeded
        }
        #expect(reloaded, "new credentials not used after SIGHUP\n\(serve.log)")
        let stale = try run(["nbdinfo", "nbds://localhost:\(serve.port)/disk?tls-certificates=\(try old.clientDirectory(name: "stale"))"])
        #expect(!stale.succeeded, "old CA still accepted after reload")
    }
}
