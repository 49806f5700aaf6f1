import Foundation
import Testing

/// `swiftnbd serve --metrics` scraped by a real Prometheus: I/O from qemu-io, TLS refusals
/// from qemu-img, nbdinfo and our own client, a SIGHUP reload, all read back through
/// Prometheus' query API; the exposition checked by `promtool`.
@Suite("Metrics: swiftnbd serve --metrics with Prometheus", .serialized, .noLeftoverProcesses)
struct MetricsInteropTests {
    @Test("Prometheus sees the bytes written, requests, latencies, qcow2 metadata, TLS refusals by reason and reloads",
          .enabled(if: Peers.available("prometheus", "promtool", "qemu-img", "qemu-io", "nbdinfo")))
    func prometheusScrape() throws {
        let creds = try TLSCredentials(label: "metrics")
        let scratch = creds.scratch
        let disk = scratch.file("disk.raw"), secret = scratch.file("secret.raw"), qcow2 = scratch.file("q.qcow2")
        try makeSparseFile(disk, size: 8 << 20)
        try makePatternFile(secret, size: 1 << 20, seed: 3)
        try runExpectingSuccess(["qemu-img", "create", "-q", "-f", "qcow2", qcow2, "64M"], server: nil)
        let x509 = try MeteredServe(exports: [("disk", disk), ("secret", secret + ",tls-only"), ("q", qcow2 + ",format=qcow2")],
                                    tls: ["--tls", "on", "--tls-certificates", creds.directory])
        defer { x509.stop() }
        try makeSparseFile(scratch.file("psk.raw"), size: 1 << 20)
        let psk = try MeteredServe(exports: [("disk", scratch.file("psk.raw"))], tls: ["--tls-psk", creds.pskFile])
        defer { psk.stop() }
        let prometheus = try PrometheusServer(scratch, targets: [x509.target, psk.target])
        defer { prometheus.stop() }
        let logs = { "\n--- x509 server\n\(x509.log)\n--- psk server\n\(psk.log)\n--- prometheus\n\(prometheus.log)" }

        // Data: 1 MiB written and read back in plaintext on "disk", 4 MiB through the qcow2 driver.
        let io = try run(["qemu-io", "-f", "raw", "nbd://127.0.0.1:\(x509.port)/disk",
                          "-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M"])
        #expect(io.succeeded && !io.stdout.contains("Pattern verification failed"), "\(io)\(logs())")
        let qio = try run(["qemu-io", "-f", "raw", "nbd://127.0.0.1:\(x509.port)/q",
                           "-c", "write -P 0xcd 0 4M", "-c", "read -P 0xcd 0 4M", "-c", "flush"])
        #expect(qio.succeeded && !qio.stdout.contains("Pattern verification failed"), "\(qio)\(logs())")

        // TLS on the x509 server: one good session, then one refusal per reason.
        let good = try run(["nbdinfo", "nbds://localhost:\(x509.port)/disk?tls-certificates=\(try creds.clientDirectory())"])
        #expect(good.succeeded, "\(good)\(logs())")
        let plaintext = try run(["nbdinfo", "nbd://127.0.0.1:\(x509.port)/secret"])
        #expect(!plaintext.succeeded, "\(plaintext)")
        let noCertificate = try run(["qemu-img", "info", "--object",
                                     QEMUTLS.x509(dir: try creds.clientDirectory(withClientCertificate: false, name: "nocert"), endpoint: "client"),
                                     "--image-opts", QEMUTLS.nbdImageOpts(port: x509.port, export: "disk", host: "localhost")])
        #expect(!noCertificate.succeeded, "\(noCertificate)")
        let other = try TLSCredentials(label: "metrics-other")
        let foreign = scratch.file("foreign")
        try FileManager.default.createDirectory(atPath: foreign, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(creds.directory)/ca-cert.pem", toPath: "\(foreign)/ca-cert.pem")
        for file in ["client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(other.directory)/\(file)", toPath: "\(foreign)/\(file)")
        }
        let unknownCA = try run([Peers.swiftnbd, "info", "nbds://localhost:\(x509.port)/disk?tls-certificates=\(foreign)"])
        #expect(!unknownCA.succeeded, "\(unknownCA)")
        kill(x509.process.pid, SIGHUP)

        // PSK server (TLS required): a good session, an unknown identity, a wrong key, a plaintext client.
        let bob = scratch.file("bob.psk"), wrong = scratch.file("wrong.psk")
        try ("bob:" + String(repeating: "ab", count: 32) + "\n").write(toFile: bob, atomically: true, encoding: .utf8)
        try ("alice:" + String(repeating: "cd", count: 32) + "\n").write(toFile: wrong, atomically: true, encoding: .utf8)
        let alice = try run(["nbdinfo", "nbds://alice@127.0.0.1:\(psk.port)/disk?tls-psk-file=\(creds.pskFile)"])
        #expect(alice.succeeded, "\(alice)\(logs())")
        #expect(!(try run(["nbdinfo", "nbds://bob@127.0.0.1:\(psk.port)/disk?tls-psk-file=\(bob)"])).succeeded)
        #expect(!(try run(["nbdinfo", "nbds://alice@127.0.0.1:\(psk.port)/disk?tls-psk-file=\(wrong)"])).succeeded)
        #expect(!(try run(["nbdinfo", "nbd://127.0.0.1:\(psk.port)/disk"])).succeeded)

        // Wait (bounded) until Prometheus has scraped the last event of each server.
        let onX509 = "instance=\"\(x509.target)\"", onPSK = "instance=\"\(psk.target)\""
        let reloads = try prometheus.waitFor("swiftnbd_credential_reloads_total{\(onX509),result=\"ok\"}") { $0 >= 1 }
        #expect(reloads == 1, "\(logs())")
        let plaintextPSK = try prometheus.waitFor(
            "swiftnbd_tls_handshakes_total{\(onPSK),result=\"refused\",reason=\"plaintext_to_tls_only_export\"}") { $0 >= 1 }
        #expect(plaintextPSK == 1, "\(logs())")

        func value(_ query: String) throws -> Double? { try prometheus.value(query) }
        func refusals(_ instance: String, _ reason: String) throws -> Double? {
            try value("swiftnbd_tls_handshakes_total{\(instance),result=\"refused\",reason=\"\(reason)\"}")
        }
        #expect(try value("min(up{job=\"swiftnbd\"})") == 1)
        #expect(try value("swiftnbd_export_written_bytes_total{\(onX509),export=\"disk\"}") == Double(1 << 20))
        #expect(try value("swiftnbd_export_read_bytes_total{\(onX509),export=\"disk\"}") ?? 0 >= Double(1 << 20))
        #expect(try value("swiftnbd_export_requests_total{\(onX509),export=\"disk\",command=\"write\",result=\"ok\"}") == 1)
        #expect(try value("sum(swiftnbd_export_requests_total{result=\"ok\"})") ?? 0 > 0)
        #expect(try value("sum(swiftnbd_export_requests_total{result!=\"ok\"}) or vector(0)") == 0)
        #expect(try value("swiftnbd_export_request_duration_seconds_count{\(onX509),export=\"disk\",command=\"write\"}") == 1)
        #expect(try value("swiftnbd_export_request_duration_seconds_bucket{\(onX509),export=\"disk\",command=\"write\",le=\"10.0\"}") == 1)
        #expect(try value("swiftnbd_export_written_bytes_total{\(onX509),export=\"q\"}") == Double(4 << 20))
        #expect(try value("swiftnbd_export_metadata_writes_total{\(onX509),export=\"q\",kind=\"l2\"}") ?? 0 > 0)
        #expect(try value("swiftnbd_export_metadata_writes_total{\(onX509),export=\"q\",kind=\"refcount\"}") ?? 0 > 0)
        #expect(try value("swiftnbd_export_metadata_cache_misses_total{\(onX509),export=\"q\",cache=\"l2\"}") ?? 0 > 0)
        #expect(try value("swiftnbd_export_metadata_cache_hits_total{\(onX509),export=\"q\",cache=\"l2\"}") ?? 0 > 0)
        #expect(try value("sum(swiftnbd_export_requests_in_flight)") == 0)
        #expect(try value("sum(swiftnbd_connections)") == 0)
        let accepted = try value("swiftnbd_connections_accepted_total{\(onX509),transport=\"tcp\"}")
        // Six clients, plus the readiness probe of the test harness (connects and closes).
        #expect(accepted == 7, "\(String(describing: accepted))\(logs())")

        #expect(try value("swiftnbd_tls_handshakes_total{\(onX509),result=\"ok\"}") == 1)
        #expect(try refusals(onX509, "plaintext_to_tls_only_export") == 1)
        #expect(try refusals(onX509, "no_client_certificate") == 1)
        #expect(try refusals(onX509, "unknown_ca") == 1)
        #expect(try value("swiftnbd_tls_handshakes_total{\(onPSK),result=\"ok\"}") == 1)
        #expect(try refusals(onPSK, "unknown_psk_identity") == 1)
        #expect(try refusals(onPSK, "wrong_psk_key") == 1)
        #expect(try value("sum(swiftnbd_tls_handshakes_total{reason=\"other\"})") == 0, "\(logs())")

        // Prometheus read our HELP and TYPE lines.
        let metadata = try httpGet(host: "127.0.0.1", port: prometheus.port, path: "/api/v1/metadata?metric=swiftnbd_export_written_bytes_total")
        #expect(metadata.body.contains("\"type\":\"counter\"") && metadata.body.contains("Bytes written by successful WRITE"), "\(metadata)")

        // promtool's linter finds nothing to complain about in a scrape.
        let scrape = try httpGet(host: "127.0.0.1", port: x509.metricsPort, path: "/metrics")
        #expect(scrape.status == 200)
        let lint = try run(["promtool", "check", "metrics"], stdin: Data(scrape.body.utf8))
        #expect(lint.succeeded && lint.stdout.isEmpty && lint.stderr.isEmpty, "\(lint)\n\(scrape.body)")
    }

    @Test("scrapers that stall or flood the metrics port do not slow NBD I/O, and scraping recovers",
          .enabled(if: Peers.available("qemu-io")))
    func hostileScrapers() throws {
        let scratch = TempDir("swiftnbd-metrics-hostile")
        let disk = scratch.file("disk.raw")
        try makeSparseFile(disk, size: 8 << 20)
        let serve = try MeteredServe(exports: [("disk", disk)], tls: [])
        defer { serve.stop() }
        var stalled: [Int32] = []
        defer { stalled.forEach { close($0) } }
        for _ in 0..<64 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(serve.metricsPort).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            _ = send(fd, "GET /metr", 9, Int32(MSG_NOSIGNAL))
            stalled.append(fd)
        }
        let started = Date()
        let io = try run(["qemu-io", "-f", "raw", "nbd://127.0.0.1:\(serve.port)/disk",
                          "-c", "write -P 0x11 0 4M", "-c", "read -P 0x11 0 4M", "-c", "flush"], timeout: 60)
        #expect(io.succeeded && !io.stdout.contains("Pattern verification failed"), "\(io)\n\(serve.log)")
        #expect(Date().timeIntervalSince(started) < 10, "NBD I/O took \(Date().timeIntervalSince(started)) s beside stalled scrapers")
        // The stalled scrapes are cut at the 5 s read deadline; then scraping works again.
        var scraped: (status: Int, body: String)?
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            scraped = try? httpGet(host: "127.0.0.1", port: serve.metricsPort, path: "/metrics")
            if scraped?.status == 200 { break }
            usleep(250_000)
        }
        #expect(scraped?.status == 200, "\(String(describing: scraped))\n\(serve.log)")
        #expect(scraped?.body.contains("swiftnbd_export_written_bytes_total{export=\"disk\"} 4194304") == true, "\(String(describing: scraped))")
        #expect(serve.process.isRunning)
    }
}

/// `swiftnbd serve` with TLS flags and `--metrics` on 127.0.0.1, signals unblocked (SIGHUP).
final class MeteredServe {
    let port = FreePort.next()
    let metricsPort = FreePort.next()
    let process: ServerProcess

    init(exports: [(String, String)], tls: [String]) throws {
        process = try startTLSPeer(TLSServe.arguments(port: port, exports: exports) + tls
                                   + ["--metrics", "127.0.0.1:\(metricsPort)"], port: port)
    }

    var target: String { "127.0.0.1:\(metricsPort)" }
    var log: String { process.log }
    func stop() { process.stop() }
}
