import Foundation
import Testing

/// Credentials from `swiftnbd certs create` work with the real TLS peers.
@Suite("TLS certificates from swiftnbd certs with real peers", .serialized)
struct TLSCertificatesInteropTests {
    @Test("certtool verifies the server and client certificates against the CA",
          .enabled(if: Peers.available("certtool")))
    func certtoolVerifies() throws {
        let creds = try TLSCredentials()
        for leaf in ["server-cert.pem", "client-cert.pem"] {
            let result = try run(["certtool", "--verify", "--load-ca-certificate", "\(creds.directory)/ca-cert.pem",
                                  "--infile", "\(creds.directory)/\(leaf)"])
            #expect(result.succeeded, "\(leaf): \(result)")
            #expect(result.stdout.contains("The certificate is trusted"), "\(leaf): \(result)")
        }
    }

    @Test("swiftnbd certs check reports the chain, SAN match and both DN orders",
          .enabled(if: Peers.available("certtool")))
    func checkReports() throws {
        let creds = try TLSCredentials(clientName: "laptop")
        let ok = try run([Peers.swiftnbd, "certs", "check", creds.directory, "--hostname", "localhost", "--hostname", "127.0.0.1"])
        #expect(ok.succeeded, "\(ok)")
        #expect(ok.stdout.contains("CN=laptop,O=SwiftNBD"))
        #expect(ok.stdout.contains("O=SwiftNBD,CN=laptop"))
        #expect(ok.stdout.contains("hostname 'localhost': matches"))
        let bad = try run([Peers.swiftnbd, "certs", "check", creds.directory, "--hostname", "other.example"])
        #expect(!bad.succeeded)
        #expect(bad.stdout.contains("hostname 'other.example': PROBLEM: does not match"), "\(bad)")
        let expired = try TLSCredentials(label: "expired", extra: ["--expired"])
        let report = try run([Peers.swiftnbd, "certs", "check", expired.directory])
        #expect(!report.succeeded)
        #expect(report.stdout.contains("PROBLEM: expired"), "\(report)")
    }

    @Test("certs create rejects bad input with one clear line")
    func createRejectsBadInput() throws {
        let dir = TempDir("certs-bad")
        let noNames = try run([Peers.swiftnbd, "certs", "create", dir.file("a")])
        #expect(!noNames.succeeded && noNames.stderr.contains("--hostname"), "\(noNames)")
        let badIP = try run([Peers.swiftnbd, "certs", "create", dir.file("b"), "--ip", "1.2.3.400"])
        #expect(!badIP.succeeded && badIP.stderr.contains("'1.2.3.400' is not an IPv4 or IPv6 address"), "\(badIP)")
        let creds = try TLSCredentials()
        let again = try run([Peers.swiftnbd, "certs", "create", creds.directory, "--hostname", "x"])
        #expect(!again.succeeded && again.stderr.contains("refusing to overwrite"), "\(again)")
    }

    @Test("qemu-nbd serves over TLS with them and qemu-img reads the data back byte for byte",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img")))
    func qemuNBDAcceptsX509() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw"), copy = creds.scratch.file("copy.raw")
        try makePatternFile(image, size: 4 << 20, seed: 7)
        let port = FreePort.next()
        let server = try startTLSPeer(["qemu-nbd", "--object", QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"),
                                        "--tls-creds", "tls0", "-f", "raw", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t", image], port: port)
        defer { server.stop() }
        let result = try run(["qemu-img", "convert", "-O", "raw", "--object", QEMUTLS.x509(dir: try creds.clientDirectory(), endpoint: "client"),
                              "--image-opts", QEMUTLS.nbdImageOpts(port: port, export: "disk"), copy])
        #expect(result.succeeded, "\(result)\n\(server.log)")
        #expect(filesEqual(image, copy))
    }

    @Test("qemu-nbd refuses a qemu-img client without a client certificate",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img")))
    func qemuNBDRequiresClientCertificate() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw")
        try makeSparseFile(image, size: 1 << 20)
        let port = FreePort.next()
        let server = try startTLSPeer(["qemu-nbd", "--object", QEMUTLS.x509(dir: try creds.serverDirectory(), endpoint: "server"),
                                        "--tls-creds", "tls0", "-f", "raw", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t", image], port: port)
        defer { server.stop() }
        let result = try run(["qemu-img", "info", "--object", QEMUTLS.x509(dir: try creds.clientDirectory(withClientCertificate: false), endpoint: "client"),
                              "--image-opts", QEMUTLS.nbdImageOpts(port: port, export: "disk")])
        #expect(!result.succeeded, "\(result)")
    }

    @Test("qemu-nbd accepts the keys.psk from certs create",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img")))
    func qemuNBDAcceptsPSK() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw"), copy = creds.scratch.file("copy.raw")
        try makePatternFile(image, size: 1 << 20, seed: 3)
        let port = FreePort.next()
        let pskDir = try creds.pskDirectory()
        let server = try startTLSPeer(["qemu-nbd", "--object", QEMUTLS.psk(dir: pskDir, endpoint: "server"),
                                        "--tls-creds", "tls0", "-f", "raw", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t", image], port: port)
        defer { server.stop() }
        let result = try run(["qemu-img", "convert", "-O", "raw", "--object", QEMUTLS.psk(dir: pskDir, endpoint: "client", username: "alice"),
                              "--image-opts", QEMUTLS.nbdImageOpts(port: port, export: "disk"), copy])
        #expect(result.succeeded, "\(result)\n\(server.log)")
        #expect(filesEqual(image, copy))
    }

    @Test("nbdkit with --tls-verify-peer accepts them and nbdcopy copies the data exactly",
          .enabled(if: Peers.available("nbdkit", "nbdcopy")))
    func nbdkitAcceptsX509() throws {
        let creds = try TLSCredentials()
        let image = creds.scratch.file("disk.raw"), copy = creds.scratch.file("copy.raw")
        try makePatternFile(image, size: 2 << 20, seed: 11)
        let port = FreePort.next()
        let server = try startTLSPeer(["nbdkit", "-f", "-i", "127.0.0.1", "-p", "\(port)", "--tls=require",
                                        "--tls-certificates=\(try creds.serverDirectory())", "--tls-verify-peer", "file", image], port: port)
        defer { server.stop() }
        let result = try run(["nbdcopy", "nbds://localhost:\(port)/?tls-certificates=\(try creds.clientDirectory())", copy])
        #expect(result.succeeded, "\(result)\n\(server.log)")
        #expect(filesEqual(image, copy))
    }
}
