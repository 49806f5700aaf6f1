import Foundation
import Testing

/// TLS over Unix sockets (names come from tls-hostname only), `swiftnbd copy` over TLS with
/// data checked byte for byte, and startup errors for unusable credentials.
@Suite("TLS: Unix sockets, copy, and startup checks", .serialized, .noLeftoverProcesses)
struct TLSUnixAndCopyInteropTests {
    @Test("swiftnbd copy reads qemu-nbd over x509 and nbdkit over PSK byte for byte, and writes back through qemu-nbd",
          .enabled(if: Peers.available("qemu-nbd", "nbdkit")))
    func copyOverTLS() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw")
        try makePatternFile(image, size: 6 << 20, seed: 21)
        let port = FreePort.next()
        let qemu = try startTLSPeer(["qemu-nbd", "--object", QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"),
                                     "--tls-creds", "tls0", "-f", "raw", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t", image], port: port)
        defer { qemu.stop() }
        let client = try creds.clientDirectory()
        let copy = creds.scratch.file("copy.raw")
        let out = try run([Peers.swiftnbd, "copy", "nbds://localhost:\(port)/disk?tls-certificates=\(client)", copy, "--no-progress"])
        #expect(out.succeeded, "\(out)\n\(qemu.log)")
        #expect(filesEqual(image, copy))
        let upload = creds.scratch.file("upload.raw")
        try makePatternFile(upload, size: 6 << 20, seed: 22)
        let back = try run([Peers.swiftnbd, "copy", upload, "nbds://localhost:\(port)/disk?tls-certificates=\(client)", "--flush", "--no-progress"])
        #expect(back.succeeded, "\(back)\n\(qemu.log)")
        qemu.stop()
        #expect(filesEqual(image, upload))

        let kitPort = FreePort.next()
        let kit = try startTLSPeer(["nbdkit", "-f", "-i", "127.0.0.1", "-p", "\(kitPort)", "--tls=require", "--tls-psk=\(creds.pskFile)", "file", upload], port: kitPort)
        defer { kit.stop() }
        let pskCopy = creds.scratch.file("psk-copy.raw")
        let viaPSK = try run([Peers.swiftnbd, "copy", "nbds://alice@127.0.0.1:\(kitPort)/?tls-psk-file=\(creds.pskFile)", pskCopy, "--no-progress"])
        #expect(viaPSK.succeeded, "\(viaPSK)\n\(kit.log)")
        #expect(filesEqual(upload, pskCopy))
    }

    @Test("our client upgrades with nbdkit --tls=on (opportunistic server)",
          .enabled(if: Peers.available("nbdkit")))
    func nbdkitTLSOn() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw")
        try makePatternFile(image, size: 1 << 20, seed: 2)
        let port = FreePort.next()
        let kit = try startTLSPeer(["nbdkit", "-f", "-v", "-i", "127.0.0.1", "-p", "\(port)", "--tls=on",
                                    "--tls-certificates=\(try creds.serverDirectory())", "file", image], port: port)
        defer { kit.stop() }
        let result = try run([Peers.swiftnbd, "info", "nbds://localhost:\(port)/?tls-certificates=\(try creds.clientDirectory())"])
        #expect(result.succeeded, "\(result)\n\(kit.log)")
        #expect(result.stdout.contains("TLS"), "\(result)")
    }

    @Test("over a Unix socket qemu-io needs tls-hostname and then reads and writes through our server",
          .enabled(if: Peers.available("qemu-io")))
    func unixSocketQEMU() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw")
        try makePatternFile(image, size: 2 << 20, seed: 8)
        let socket = creds.scratch.file("nbd.sock")
        let serve = try startTLSPeer([Peers.swiftnbd, "serve", image, "--name", "disk", "--unix", socket, "--tls-certificates", creds.directory],
                                     unixSocket: socket)
        defer { serve.stop() }
        let object = QEMUTLS.x509(dir: try creds.clientDirectory(), endpoint: "client")
        let base = "driver=nbd,server.type=unix,server.path=\(socket),export=disk,tls-creds=tls0"
        let withoutName = try run(["qemu-io", "--object", object, "--image-opts", base, "-c", "read 0 4096"])
        #expect(!withoutName.succeeded, "QEMU connected over a Unix socket without a name to check: \(withoutName)")
        let ok = try run(["qemu-io", "--object", object, "--image-opts", base + ",tls-hostname=localhost",
                          "-c", "write -P 0x5a 0 65536", "-c", "read -P 0x5a 0 65536"])
        #expect(ok.succeeded && !ok.stdout.contains("Pattern verification failed"), "\(ok)\n\(serve.log)")
        let data = try Data(contentsOf: URL(fileURLWithPath: image))
        #expect(Array(data[0..<65536]) == [UInt8](repeating: 0x5a, count: 65536))
    }

    @Test("over a Unix socket our client verifies the chain, and tls-hostname adds a name check")
    func unixSocketOurClient() throws {
        let creds = try TLSCredentials(), other = try TLSCredentials(label: "other")
        let image = creds.scratch.file("disk.raw")
        try makePatternFile(image, size: 1 << 20, seed: 8)
        let socket = creds.scratch.file("nbd.sock")
        let serve = try startTLSPeer([Peers.swiftnbd, "serve", image, "--name", "disk", "--unix", socket, "--tls-certificates", creds.directory],
                                     unixSocket: socket)
        defer { serve.stop() }
        let client = try creds.clientDirectory()
        let chainOnly = try run([Peers.swiftnbd, "info", "nbds+unix:///disk?socket=\(socket)&tls-certificates=\(client)"])
        #expect(chainOnly.succeeded, "\(chainOnly)\n\(serve.log)")
        let named = try run([Peers.swiftnbd, "info", "nbds+unix:///disk?socket=\(socket)&tls-certificates=\(client)&tls-hostname=localhost"])
        #expect(named.succeeded, "\(named)")
        let wrongName = try run([Peers.swiftnbd, "info", "nbds+unix:///disk?socket=\(socket)&tls-certificates=\(client)&tls-hostname=other.example"])
        #expect(!wrongName.succeeded && wrongName.stderr.contains("does not match hostname 'other.example'"), "\(wrongName)")
        let wrongCA = try run([Peers.swiftnbd, "info", "nbds+unix:///disk?socket=\(socket)&tls-certificates=\(try other.clientDirectory())"])
        #expect(!wrongCA.succeeded && wrongCA.stderr.contains("signed by an unknown CA"), "\(wrongCA)")
    }

    @Test("dh-params.pem from certtool is loaded and a TLS 1.2 DHE-RSA handshake works (RSA keys from certs create)",
          .enabled(if: Peers.available("certtool", "nbdinfo")))
    func dhParameters() throws {
        let creds = try TLSCredentials(label: "rsa", extra: ["--key-type", "rsa-3072"])
        let params = try run(["certtool", "--get-dh-params", "--sec-param", "medium", "--outfile", "\(creds.directory)/dh-params.pem"])
        #expect(params.succeeded, "\(params)")
        let image = creds.scratch.file("disk.raw")
        try makePatternFile(image, size: 1 << 20, seed: 1)
        let port = FreePort.next()
        let serve = try startTLSPeer([Peers.swiftnbd, "serve", image, "--name", "disk", "--bind", "127.0.0.1", "--port", "\(port)",
                                      "--tls-certificates", creds.directory, "--tls-priority", "NORMAL:-VERS-TLS1.3:-KX-ALL:+DHE-RSA"],
                                     port: port)
        defer { serve.stop() }
        let result = try run(["nbdinfo", "nbds://localhost:\(port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(result.succeeded, "\(result)\n\(serve.log)")
    }

    @Test("certs check finds a key that does not belong to its certificate")
    func checkFindsWrongKey() throws {
        let creds = try TLSCredentials()
        try FileManager.default.removeItem(atPath: "\(creds.directory)/server-key.pem")
        try FileManager.default.copyItem(atPath: "\(creds.directory)/client-key.pem", toPath: "\(creds.directory)/server-key.pem")
        let result = try run([Peers.swiftnbd, "certs", "check", creds.directory])
        #expect(!result.succeeded)
        #expect(result.stdout.contains("server-key.pem does not belong to this certificate"), "\(result)")
    }

    @Test("serve refuses to start with unusable credentials and names the file")
    func unusableCredentials() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw")
        try makeSparseFile(image, size: 1 << 20)
        let port = "\(FreePort.next())"
        let missing = try run([Peers.swiftnbd, "serve", image, "--bind", "127.0.0.1", "--port", port, "--tls-certificates", creds.scratch.file("nope")], timeout: 30)
        #expect(!missing.succeeded && missing.stderr.contains("ca-cert.pem' is missing"), "\(missing)")
        let badPSK = creds.scratch.file("bad.psk")
        try "alice:xyz\n".write(toFile: badPSK, atomically: true, encoding: .utf8)
        let psk = try run([Peers.swiftnbd, "serve", image, "--bind", "127.0.0.1", "--port", port, "--tls-psk", badPSK], timeout: 30)
        #expect(!psk.succeeded && psk.stderr.contains("line 1"), "\(psk)")
        let noCreds = try run([Peers.swiftnbd, "serve", image, "--bind", "127.0.0.1", "--port", port, "--tls", "require"], timeout: 30)
        #expect(!noCreds.succeeded && noCreds.stderr.contains("needs credentials"), "\(noCreds)")
        let authzPSK = try run([Peers.swiftnbd, "serve", image, "--bind", "127.0.0.1", "--port", port, "--tls-psk", creds.pskFile,
                                "--tls-authz", "CN=x"], timeout: 30)
        #expect(!authzPSK.succeeded && authzPSK.stderr.contains("--tls-authz"), "\(authzPSK)")
    }
}
