import Foundation

/// A real Prometheus (the Debian package) scraping given targets every second, with its
/// storage in a scratch directory, queried through its HTTP API.
final class PrometheusServer: @unchecked Sendable {
    let port: Int
    let process: ServerProcess

    /// Starts `prometheus` on 127.0.0.1 and a free port, scraping `targets` ("host:port") as
    /// job `swiftnbd` every second.
    init(_ scratch: TempDir, targets: [String]) throws {
        let port = FreePort.next()
        self.port = port
        let config = scratch.file("prometheus.yml")
        let targetList = targets.map { "'\($0)'" }.joined(separator: ", ")
        try """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: swiftnbd
                static_configs:
                  - targets: [\(targetList)]
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let storage = scratch.file("prometheus-data")
        try FileManager.default.createDirectory(atPath: storage, withIntermediateDirectories: true)
        process = try withUnblockedSignals {
            try ServerProcess(["prometheus", "--config.file=\(config)", "--storage.tsdb.path=\(storage)",
                               "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"],
                              listener: .tcp(host: "127.0.0.1", port: port))
        }
    }

    var log: String { process.log }
    func stop() { process.stop() }

    /// One sample of an instant query's result.
    struct Sample: CustomStringConvertible {
        var labels: [String: String]
        var value: Double
        var description: String { "\(labels) \(value)" }
    }

    /// Evaluates `promql` now (`/api/v1/query`); throws on an error reply.
    func query(_ promql: String) throws -> [Sample] {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = promql.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
        let (status, body) = try httpGet(host: "127.0.0.1", port: port, path: "/api/v1/query?query=\(encoded)")
        guard status == 200,
              let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
              json["status"] as? String == "success",
              let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]] else {
            throw FixtureFailure("Prometheus query \(promql) failed: HTTP \(status) \(body)")
        }
        return result.compactMap { entry in
            guard let labels = entry["metric"] as? [String: String], let pair = entry["value"] as? [Any], pair.count == 2,
                  let text = pair[1] as? String, let value = Double(text) else { return nil }
            return Sample(labels: labels, value: value)
        }
    }

    /// The single value of `promql` (a query that yields one series), or nil.
    func value(_ promql: String) throws -> Double? {
        let samples = try query(promql)
        return samples.count == 1 ? samples[0].value : nil
    }

    /// Polls `promql` until its single value satisfies `condition` (bounded); returns the last value.
    @discardableResult
    func waitFor(_ promql: String, timeout: Double = 60, _ condition: (Double) -> Bool) throws -> Double? {
        let deadline = Date().addingTimeInterval(timeout)
        var last: Double?
        while Date() < deadline {
            last = try value(promql)
            if let last, condition(last) { return last }
            usleep(250_000)
        }
        return last
    }
}

/// A plain HTTP/1.0 GET (no keep-alive, no chunking), for the metrics endpoint and
/// Prometheus' API: returns the status code and the body.
func httpGet(host: String, port: Int, path: String, timeout: Int = 10) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw FixtureFailure("socket failed") }
    defer { close(fd) }
    var tv = timeval(tv_sec: timeout, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr(host)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { throw FixtureFailure("cannot connect to \(host):\(port)") }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host):\(port)\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
        throw FixtureFailure("send to \(host):\(port) failed")
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 { throw FixtureFailure("recv from \(host):\(port) failed: errno \(errno)") }
        if count == 0 { break }
        response += buffer[0..<count]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let headEnd = text.range(of: "\r\n\r\n") else { throw FixtureFailure("no HTTP head from \(host):\(port): \(text)") }
    let statusLine = text[..<headEnd.lowerBound].split(separator: "\r\n").first ?? ""
    let status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return (status, String(text[headEnd.upperBound...]))
}
