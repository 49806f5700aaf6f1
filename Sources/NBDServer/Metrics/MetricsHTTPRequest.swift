/// What the metrics endpoint makes of the bytes a client sent: only the request line matters;
/// header fields are bounded but otherwise ignored, and a body is never read. Pure, so every
/// case is a unit test.
enum MetricsHTTPRequest: Equatable {
    /// The head is not complete yet (no empty line so far).
    case incomplete
    /// The head is larger than the limit allows (answered 431).
    case tooLarge
    /// Not an HTTP/1.x request line (answered 400).
    case malformed
    /// A well-formed request line.
    case request(method: String, path: String)

    /// Parses what has arrived so far, `maxHeadBytes` at most. `scanFrom`: where the search
    /// for the end of the head may start (bytes before it were searched already), so a client
    /// trickling its request byte by byte costs linear, not quadratic, time.
    static func parse(_ bytes: [UInt8], maxHeadBytes: Int, scanFrom: Int = 0) -> MetricsHTTPRequest {
        guard let headEnd = endOfHead(bytes, from: scanFrom) else {
            return bytes.count >= maxHeadBytes ? .tooLarge : .incomplete
        }
        guard headEnd <= maxHeadBytes else { return .tooLarge }
        let lineEnd = bytes[..<headEnd].firstIndex(of: UInt8(ascii: "\n")) ?? headEnd
        var line = bytes[..<lineEnd]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        // Request line: METHOD SP request-target SP HTTP-version (RFC 9112 §3), printable ASCII.
        guard line.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return .malformed }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty,
              parts[0].allSatisfy({ isTokenByte($0) }) else { return .malformed }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .malformed }
        var target = parts[1]
        if let query = target.firstIndex(of: UInt8(ascii: "?")) { target = target[..<query] }
        return .request(method: String(decoding: parts[0], as: UTF8.self), path: String(decoding: target, as: UTF8.self))
    }

    /// The index just past the empty line ending the head (CRLF CRLF, or bare LF LF), if any,
    /// looking at line ends from `from` on.
    static func endOfHead(_ bytes: [UInt8], from: Int = 0) -> Int? {
        var index = max(0, from)
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                let next = index + 1
                if next < bytes.count && bytes[next] == UInt8(ascii: "\n") { return next + 1 }
                if next + 1 < bytes.count && bytes[next] == UInt8(ascii: "\r") && bytes[next + 1] == UInt8(ascii: "\n") {
                    return next + 2
                }
            }
            index += 1
        }
        return nil
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            tokenSymbols.contains(byte)
        }
    }

    private static let tokenSymbols = Array("!#$%&'*+-.^_`|~".utf8)
}

/// The responses the endpoint can give: each one complete and closing the connection.
enum MetricsHTTPResponse {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The reply to a parsed (or unparseable) request; `body` is rendered only for a scrape.
    static func reply(to request: MetricsHTTPRequest, body: () -> [UInt8]) -> [UInt8] {
        switch request {
        case .incomplete, .malformed: return message(400, "Bad Request")
        case .tooLarge: return message(431, "Request Header Fields Too Large")
        case let .request(method, path):
            guard path == "/metrics" else { return message(404, "Not Found") }
            guard method == "GET" || method == "HEAD" else {
                return message(405, "Method Not Allowed", extraHeaders: "Allow: GET, HEAD\r\n")
            }
            let content = body()
            let head = "HTTP/1.1 200 OK\r\nContent-Type: \(contentType)\r\nContent-Length: \(content.count)\r\n"
                + "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            return Array(head.utf8) + (method == "HEAD" ? [] : content)
        }
    }

    /// A short plain-text status reply.
    static func message(_ status: Int, _ reason: String, extraHeaders: String = "") -> [UInt8] {
        let text = "\(status) \(reason)\n"
        return Array(("HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(text.utf8.count)\r\n\(extraHeaders)Connection: close\r\n\r\n\(text)").utf8)
    }
}
