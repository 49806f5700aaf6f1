import Testing
import PrometheusExposition
@testable import NBDServer

/// The pure pieces of the metrics endpoint: request heads, listen addresses, help lines.
@Suite("Metrics parsing")
struct MetricsParsingTests {
    func parse(_ text: String, limit: Int = 8192) -> MetricsHTTPRequest {
        MetricsHTTPRequest.parse(Array(text.utf8), maxHeadBytes: limit)
    }

    @Test("request heads: complete, incomplete, malformed, too large")
    func requestHeads() {
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == .request(method: "GET", path: "/metrics"))
        #expect(parse("HEAD /metrics?name[]=x HTTP/1.0\n\n") == .request(method: "HEAD", path: "/metrics"))
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n") == .incomplete)
        #expect(parse("") == .incomplete)
        #expect(parse("GET /metrics HTTP/1.1 extra\r\n\r\n") == .malformed)
        #expect(parse("GET\t/metrics HTTP/1.1\r\n\r\n") == .malformed)
        #expect(parse("G(T /metrics HTTP/1.1\r\n\r\n") == .malformed)
        #expect(parse("GET /metrics HTTP/1.2\r\n\r\n") == .malformed)
        #expect(parse("GET /m\u{e9}trics HTTP/1.1\r\n\r\n") == .malformed)
        #expect(parse("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 100), limit: 64) == .tooLarge)
        #expect(parse("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 100) + "\r\n\r\n", limit: 64) == .tooLarge)
        // Every prefix of a valid head is incomplete, never a trap or a wrong answer.
        let valid = Array("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n\r\n".utf8)
        for cut in 0..<valid.count {
            #expect(MetricsHTTPRequest.parse(Array(valid[0..<cut]), maxHeadBytes: 8192) == .incomplete, "cut \(cut)")
        }
        // Searching from where the last search stopped finds the same end.
        #expect(MetricsHTTPRequest.endOfHead(valid, from: valid.count - 3) == valid.count)
        #expect(MetricsHTTPRequest.endOfHead(valid, from: 10_000) == nil)
    }

    @Test("responses: status lines, and the body only for a GET of /metrics")
    func responses() {
        func reply(_ request: MetricsHTTPRequest) -> String {
            String(decoding: MetricsHTTPResponse.reply(to: request, body: { Array("x 1\n".utf8) }), as: UTF8.self)
        }
        #expect(reply(.request(method: "GET", path: "/metrics")).hasSuffix("Connection: close\r\n\r\nx 1\n"))
        #expect(reply(.request(method: "HEAD", path: "/metrics")).hasSuffix("Connection: close\r\n\r\n"))
        #expect(reply(.request(method: "POST", path: "/metrics")).hasPrefix("HTTP/1.1 405 "))
        #expect(reply(.request(method: "GET", path: "/")).hasPrefix("HTTP/1.1 404 "))
        #expect(reply(.malformed).hasPrefix("HTTP/1.1 400 "))
        #expect(reply(.tooLarge).hasPrefix("HTTP/1.1 431 "))
    }

    @Test("listen addresses for --metrics")
    func listenAddresses() throws {
        #expect(try ListenAddress(parsing: "127.0.0.1:9100") == .tcp(host: "127.0.0.1", port: 9100))
        #expect(try ListenAddress(parsing: "[::1]:9100") == .tcp(host: "::1", port: 9100))
        #expect(try ListenAddress(parsing: ":9100") == .tcp(host: nil, port: 9100))
        #expect(try ListenAddress(parsing: "localhost:0") == .tcp(host: "localhost", port: 0))
        #expect(try ListenAddress(parsing: "unix:/run/swiftnbd-metrics.sock") == .unix(path: "/run/swiftnbd-metrics.sock"))
        for bad in ["", "9100", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:9x", "::1:9100",
                    "[::1]9100", "[::1", "[]:9100", "unix:", "host:٣"] {
            #expect(throws: ServerError.self, "\(bad)") { try ListenAddress(parsing: bad) }
        }
    }

    @Test("help lines go before their TYPE line, escaped; unknown families pass unchanged")
    func helpLines() {
        let exposition = Array("# TYPE a_total counter\na_total{x=\"1\"} 2\n# TYPE b gauge\nb 1.0\n# TYPE c gauge\nc 0.0".utf8)
        let result = String(decoding: PrometheusHelpLines.inserting(into: exposition, help: ["a_total": "As, \\ and\nmore.", "c": "C."]),
                            as: UTF8.self)
        #expect(result == "# HELP a_total As, \\\\ and\\nmore.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n# TYPE b gauge\nb 1.0\n"
            + "# HELP c C.\n# TYPE c gauge\nc 0.0")
        #expect(PrometheusHelpLines.inserting(into: [], help: ["a": "b"]).isEmpty)
    }

    @Test("every server metric has help text and a name swift-prometheus keeps as is")
    func names() {
        let names = [NBDServerMetrics.requests, NBDServerMetrics.readBytes, NBDServerMetrics.writtenBytes,
                     NBDServerMetrics.requestDuration, NBDServerMetrics.requestsInFlight, NBDServerMetrics.metadataCacheHits,
                     NBDServerMetrics.metadataCacheMisses, NBDServerMetrics.metadataWrites, NBDServerMetrics.connections,
                     NBDServerMetrics.connectionsAccepted, NBDServerMetrics.connectionsRefused, NBDServerMetrics.tlsHandshakes,
                     NBDServerMetrics.credentialReloads]
        for name in names {
            #expect(NBDServerMetrics.help[name] != nil, "\(name)")
            #expect(name.hasPrefix("swiftnbd_"))
            #expect(name.allSatisfy { $0 == "_" || ("a"..."z").contains($0) }, "\(name)")
        }
        #expect(NBDServerMetrics.help.count == names.count)
        let buckets = NBDServerMetrics.requestDurationBuckets
        #expect(buckets.first == 0.000_01 && buckets.last == 10)
        #expect(zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 })
    }
}
