import Foundation
import Logging
import Testing
@testable import NBDServer

/// The scrape endpoint of `swiftnbd serve --metrics` over real loopback sockets: what it
/// answers, and that slow or oversized clients cost a bounded thread and nothing else.
@Suite("Metrics HTTP endpoint")
struct MetricsHTTPServerTests {
    static let body = Array("# TYPE demo_total counter\ndemo_total{a=\"b\"} 3\n".utf8)

    func start(_ limits: MetricsHTTPServer.Limits = .init()) throws -> MetricsHTTPServer {
        var logger = Logger(label: "metrics-test")
        logger.logLevel = .critical
        let server = MetricsHTTPServer(address: .tcp(host: "127.0.0.1", port: 0), limits: limits, logger: logger) { Self.body }
        try server.start()
        return server
    }

    @Test("GET /metrics answers 200 with the exposition, its content type and Connection: close")
    func scrape() throws {
        let server = try start()
        defer { server.stop() }
        let response = try httpGet(port: server.boundPorts[0])
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(response.contains("\r\nContent-Length: \(Self.body.count)\r\n"))
        #expect(response.contains("\r\nConnection: close\r\n"))
        #expect(response.hasSuffix("\r\n\r\n" + String(decoding: Self.body, as: UTF8.self)))
        // A query string is ignored, HTTP/1.0 and bare LF line ends are accepted.
        let legacy = try httpExchange(port: server.boundPorts[0], Array("GET /metrics?x=1 HTTP/1.0\n\n".utf8))
        #expect(legacy.hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test("HEAD /metrics sends the headers only")
    func head() throws {
        let server = try start()
        defer { server.stop() }
        let response = try httpGet(port: server.boundPorts[0], method: "HEAD")
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.contains("Content-Length: \(Self.body.count)\r\n"))
        #expect(response.hasSuffix("\r\n\r\n"))
    }

    @Test("other paths are 404, other methods 405 (with Allow), garbage 400")
    func refusals() throws {
        let server = try start()
        defer { server.stop() }
        let port = server.boundPorts[0]
        for path in ["/", "/metricsx", "/metrics/", "/exports", "http://127.0.0.1/metrics"] {
            #expect(try httpGet(port: port, path).hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(path)")
        }
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "CONNECT"] {
            let response = try httpGet(port: port, method: method)
            #expect(response.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), "\(method)")
            #expect(response.contains("\r\nAllow: GET, HEAD\r\n"), "\(method)")
        }
        for garbage in ["\u{16}\u{03}\u{01}\u{02}\u{00}\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                        "GET /metrics HTTP/2.0\r\n\r\n"] {
            let response = try httpExchange(port: port, Array(garbage.utf8))
            #expect(response.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(garbage.debugDescription): \(response)")
        }
    }

    @Test("a request head over the limit is refused with 431 without being read to its end")
    func oversized() throws {
        let server = try start()
        defer { server.stop() }
        let padding = "X-Padding: " + String(repeating: "a", count: 9000) + "\r\n"
        let response = try httpExchange(port: server.boundPorts[0], Array("GET /metrics HTTP/1.1\r\n\(padding)\r\n".utf8))
        #expect(response.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "\(response.prefix(80))")
        // The endpoint still serves.
        #expect(try httpGet(port: server.boundPorts[0]).hasPrefix("HTTP/1.1 200 OK\r\n"))
    }

    @Test("a client trickling its request is cut at the read deadline while other scrapes go through")
    func slowClient() throws {
        let server = try start(.init(readTimeout: 1.5))
        defer { server.stop() }
        let port = server.boundPorts[0]
        let slow = try connectLoopback(port: port)
        defer { slow.close() }
        try slow.send(Array("GET /met".utf8))
        let started = Date()
        #expect(try httpGet(port: port).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(Date().timeIntervalSince(started) < 1, "a stalled client delayed another scrape")
        // Keep trickling: the deadline is for the whole head, not per byte.
        for byte in Array("rics HTTP/1.1\r\n".utf8) {
            usleep(150_000)
            try? slow.send([byte])
        }
        var answer = [UInt8](repeating: 0, count: 512)
        let count = try answer.withUnsafeMutableBytes { try slow.stream.read(into: $0) }
        #expect(String(decoding: answer[0..<count], as: UTF8.self).hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("beyond the concurrent scrape limit a client gets 503 at once instead of waiting")
    func concurrencyLimit() throws {
        let server = try start(.init(readTimeout: 3, maxConcurrent: 1))
        defer { server.stop() }
        let port = server.boundPorts[0]
        let stalled = try connectLoopback(port: port)
        defer { stalled.close() }
        try stalled.send(Array("GET".utf8))
        usleep(200_000)  // let the endpoint take the first client
        let started = Date()
        let busy = try httpGet(port: port, retryWhileBusy: false)
        #expect(busy.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), "\(busy.prefix(60))")
        #expect(Date().timeIntervalSince(started) < 1)
        stalled.close()
        var served = false
        for _ in 0..<100 where !served {
            served = (try? httpGet(port: port))?.hasPrefix("HTTP/1.1 200 OK") == true
            if !served { usleep(50_000) }
        }
        #expect(served)
    }

    @Test("a client that connects and closes, or resets mid-request, leaves the endpoint serving")
    func vanishingClients() throws {
        let server = try start()
        defer { server.stop() }
        let port = server.boundPorts[0]
        for _ in 0..<20 {
            let peer = try connectLoopback(port: port)
            try? peer.send(Array("GET /metrics HTTP/1.1\r\nHo".utf8))
            var linger = linger(l_onoff: 1, l_linger: 0)  // close with RST
            setsockopt(peer.stream.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
            peer.close()
        }
        // The vanished clients' threads may still hold the few scrape slots for a moment, and
        // beyond those a connection is closed at once (the flood protection); a scraper tries
        // again, so this does too, for a bounded time.
        var answer = ""
        let deadline = Date().addingTimeInterval(10)
        while !answer.hasPrefix("HTTP/1.1 200 OK\r\n") && Date() < deadline {
            answer = (try? httpGet(port: port)) ?? ""
            if !answer.hasPrefix("HTTP/1.1 200 OK\r\n") { usleep(50_000) }
        }
        #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
    }

    @Test("a busy port fails start() with addressInUse")
    func busyPort() throws {
        let first = try start()
        defer { first.stop() }
        let second = MetricsHTTPServer(address: .tcp(host: "127.0.0.1", port: first.boundPorts[0]), logger: Logger(label: "x")) { [] }
        #expect(throws: ServerError.self) { try second.start() }
    }
}
