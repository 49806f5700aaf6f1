import CoreMetrics
import Foundation
import PrometheusExposition
@testable import NBDServer

/// A fresh metrics backend, configured as `swiftnbd serve --metrics` configures its own, so
/// tests read exactly what a scrape would show, without touching the process-wide
/// `MetricsSystem`.
struct MetricsProbe {
    let backend = PrometheusExposition(histogramBuckets: NBDServerMetrics.histogramBuckets, help: NBDServerMetrics.help)
    var factory: AtomicHistogramFactory { backend.factory }

    /// The exposition as a scrape returns it (help lines included).
    var exposition: String { String(decoding: backend.render(), as: UTF8.self) }

    /// The sample `name{labels}` (labels in the order the server creates them), or nil.
    func value(_ name: String, _ labels: KeyValuePairs<String, String> = [:]) -> Double? {
        let key = labels.isEmpty ? name : name + "{" + labels.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), line[..<space] == key else { continue }
            return Double(line[line.index(after: space)...])
        }
        return nil
    }

    /// Polls until `condition` holds (the server counts on its own threads), bounded.
    func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}

/// A raw HTTP exchange with the metrics endpoint: sends `request` as is, returns everything
/// the server sent until it closed.
/// One request and its whole response. While the endpoint answers 503 (its few scrape
/// threads still finishing earlier clients, which takes a while under ThreadSanitizer), it is
/// asked again for up to 10 s, as a scraper would, unless `retryWhileBusy` is false.
func httpExchange(port: UInt16, _ request: [UInt8], timeout: Int = 10, retryWhileBusy: Bool = true) throws -> String {
    let deadline = Date().addingTimeInterval(10)
    while true {
        let response = try httpExchangeOnce(port: port, request, timeout: timeout)
        guard retryWhileBusy, response.hasPrefix("HTTP/1.1 503 "), Date() < deadline else { return response }
        usleep(50_000)
    }
}

private func httpExchangeOnce(port: UInt16, _ request: [UInt8], timeout: Int) throws -> String {
    let peer = try connectLoopback(port: port)
    defer { peer.close() }
    var timeout = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(peer.stream.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    if !request.isEmpty { try peer.send(request) }
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = try buffer.withUnsafeMutableBytes { try peer.stream.read(into: $0) }
        if count == 0 { break }
        received += buffer[0..<count]
    }
    return String(decoding: received, as: UTF8.self)
}

func httpGet(port: UInt16, _ path: String = "/metrics", method: String = "GET", retryWhileBusy: Bool = true) throws -> String {
    try httpExchange(port: port, Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n".utf8),
                     retryWhileBusy: retryWhileBusy)
}
