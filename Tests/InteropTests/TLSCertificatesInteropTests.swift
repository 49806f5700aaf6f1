import Foundation
import Testing

/// Credentials from `swiftnbd certs create` work with the real TLS peers.
@Suite("TLS certificates from swiftnbd certs with real peers", .serialized, .noLeftoverProcesses)
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
        #expect(report.stdout.contains("PROBLEM (validity): has expired"), "\(report)")
    }

    @Test("certs check names the rule QEMU 10 refuses certtool-made credentials for",
          .enabled(if: Peers.available("certtool") && (Peers.inCI || QEMUGeneration.backports.isInstalled)))
    func checkNamesTheRuleQEMURefuses() throws {
        let scratch = TempDir("certs-rules")
        let cases: [(name: String, dir: String, expected: String)] = [
            // certtool gives an ECDSA key a critical keyUsage of digitalSignature only
            // (it drops encryption_key for ECDSA); QEMU 7.2 took it, QEMU 10 does not.
            ("ECDSA client with digitalSignature only",
             try certtoolCredentials(in: scratch.file("sigonly"), clientKeyType: "ecdsa", client: ["tls_www_client", "signing_key"]),
             "PROBLEM (key usage): critical keyUsage allows digitalSignature only; a client certificate also needs keyEncipherment, even with an ECDSA key [QEMU 10 refuses it; QEMU 7.2 accepted it]"),
            ("CA without keyCertSign",
             try certtoolCredentials(in: scratch.file("ca-no-cert-sign"), ca: ["crl_signing_key"]),
             "PROBLEM (key usage): critical keyUsage allows cRLSign only; a CA certificate needs keyCertSign [QEMU 7.2 and 10 refuse it]"),
            ("client certificate marked CA",
             try certtoolCredentials(in: scratch.file("client-is-ca"), client: ["ca", "tls_www_client", "signing_key", "encryption_key"]),
             "PROBLEM (basic constraints): basicConstraints say CA:TRUE; a client certificate must not be a CA [QEMU 7.2 and 10 refuse it]"),
        ]
        for (name, dir, expected) in cases {
            let check = try run([Peers.swiftnbd, "certs", "check", dir])
            #expect(!check.succeeded, "\(name): \(check)")
            #expect(check.stdout.contains(expected), "\(name): \(check)")
            #expect(!check.stdout.contains("\nOK"), "\(name): \(check)")
            let qemu = try loadX509Credentials(qemuImg10, dir: dir, endpoint: "client")
            #expect(!qemu.loaded, "\(name): QEMU 10 accepted it: \(qemu.result)")
            #expect(qemu.result.stderr.contains(dir), "\(name): QEMU 10 should name the refused file: \(qemu.result)")
        }
        // The control: the same recipe with keyEncipherment (RSA keeps it) passes both.
        let good = try certtoolCredentials(in: scratch.file("good"), client: ["tls_www_client", "signing_key", "encryption_key"])
        let check = try run([Peers.swiftnbd, "certs", "check", good])
        #expect(check.succeeded && check.stdout.hasSuffix("OK\n"), "\(check)")
        #expect(try loadX509Credentials(qemuImg10, dir: good, endpoint: "client").loaded)
        // QEMU 7.2 loads the ECDSA digitalSignature-only client certificate, as the rule says.
        if Peers.available("qemu-img") {
            let old = try loadX509Credentials("qemu-img", dir: cases[0].dir, endpoint: "client")
            #expect(old.loaded, "QEMU 7.2: \(old.result)")
        }
    }

    @Test("certs create output loads in QEMU 10 and 7.2 as server and client, for every key type",
          .enabled(if: Peers.inCI || QEMUGeneration.backports.isInstalled))
    func createdCredentialsLoadInQEMU() throws {
        let help = try run([Peers.swiftnbd, "certs", "create", "--help"])
        let keyTypes = ["ecdsa-p256", "rsa-3072"]
        for keyType in keyTypes { #expect(help.stdout.contains(keyType), "\(help)") }
        var qemus = [("QEMU 10", qemuImg10)]
        if Peers.available("qemu-img") { qemus.append(("QEMU 7.2", "qemu-img")) }
        for keyType in keyTypes {
            let creds = try TLSCredentials(label: "certs-\(keyType)", extra: ["--key-type", keyType])
            let check = try run([Peers.swiftnbd, "certs", "check", creds.directory, "--hostname", "localhost"])
            #expect(check.succeeded && !check.stdout.contains("PROBLEM") && !check.stdout.contains("WARNING"), "\(keyType): \(check)")
            for (name, qemuImg) in qemus {
                for endpoint in ["server", "client"] {
                    let load = try loadX509Credentials(qemuImg, dir: creds.directory, endpoint: endpoint)
                    #expect(load.loaded, "\(name) refused \(keyType) \(endpoint) credentials: \(load.result)")
                }
            }
        }
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

/// QEMU 10 from bookworm-backports (scripts/lib/install-qemu-backports.sh).
private let qemuImg10 = QEMUGeneration.backports.img

/// Makes `qemu-img` load a tls-creds-x509 object from `dir` (QEMU checks the certificates
/// then) and try an NBD socket that does not exist: loaded means it got as far as the
/// connection (or, for a server endpoint, to complaining that a client needs client creds).
private func loadX509Credentials(_ qemuImg: String, dir: String, endpoint: String) throws -> (loaded: Bool, result: RunResult) {
    let result = try run([qemuImg, "info", "--object", "tls-creds-x509,id=tls0,dir=\(dir),endpoint=\(endpoint)",
                          "--image-opts", "driver=nbd,server.type=unix,server.path=/nonexistent/nbd.sock,tls-creds=tls0"], timeout: 60)
    let loaded = result.stderr.contains("Failed to connect") || result.stderr.contains("Expected TLS credentials for a client endpoint")
    return (!result.succeeded && loaded, result)
}

/// A CA and a client certificate made by certtool from template lines, in QEMU's layout.
private func certtoolCredentials(in dir: String, ca: [String] = ["cert_signing_key", "crl_signing_key"],
                                 clientKeyType: String = "rsa", client: [String] = ["tls_www_client", "signing_key", "encryption_key"]) throws -> String {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    func certtool(_ arguments: [String]) throws {
        let result = try run(["certtool"] + arguments, timeout: 60)
        guard result.succeeded else { throw FixtureError("certtool \(arguments.joined(separator: " ")) failed: \(result)") }
    }
    let caTemplate = "\(dir)/ca.info", clientTemplate = "\(dir)/client.info"
    try (["cn = \"certtool CA\"", "ca"] + ca + ["expiration_days = 10", ""]).joined(separator: "\n")
        .write(toFile: caTemplate, atomically: true, encoding: .utf8)
    try (["cn = \"certtool client\""] + client + ["expiration_days = 10", ""]).joined(separator: "\n")
        .write(toFile: clientTemplate, atomically: true, encoding: .utf8)
    try certtool(["--generate-privkey", "--key-type", "ecdsa", "--outfile", "\(dir)/ca-key.pem"])
    try certtool(["--generate-self-signed", "--load-privkey", "\(dir)/ca-key.pem", "--template", caTemplate, "--outfile", "\(dir)/ca-cert.pem"])
    try certtool(["--generate-privkey", "--key-type", clientKeyType, "--outfile", "\(dir)/client-key.pem"])
    try certtool(["--generate-certificate", "--load-privkey", "\(dir)/client-key.pem", "--load-ca-certificate", "\(dir)/ca-cert.pem",
                  "--load-ca-privkey", "\(dir)/ca-key.pem", "--template", clientTemplate, "--outfile", "\(dir)/client-cert.pem"])
    return dir
}
