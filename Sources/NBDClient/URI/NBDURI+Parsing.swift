#if canImport(Glibc)
import Glibc
#endif
import NBDProtocol

extension NBDURI {
    /// Query keys we understand (compared case-insensitively, as libnbd does).
    static let knownQueryKeys = ["socket", "tls-certificates", "tls-psk-file", "tls-verify-peer", "tls-hostname"]

    /// Parses an NBD URI the way libnbd's `nbd_connect_uri` does (docs/protocol.md §6), with
    /// local files allowed (`tls-certificates`, `tls-psk-file`) as libnbd's CLI tools allow them.
    /// Every malformed input throws an `NBDClientError` with code `.invalidURI` and one sentence
    /// saying what is wrong.
    public init(_ text: String) throws {
        func fail(_ why: String) -> NBDClientError { NBDClientError(.invalidURI, "invalid NBD URI '\(text)': \(why)") }

        if text.isEmpty { throw NBDClientError(.invalidURI, "empty NBD URI") }
        if let bad = text.utf8.firstIndex(where: { $0 <= 0x20 || $0 == 0x7f }) {
            let position = text.utf8.distance(from: text.utf8.startIndex, to: bad)
            throw fail("space or control character at position \(position) (percent-encode it)")
        }
        guard let schemeEnd = text.firstRange(of: "://") else {
            throw fail("expected a scheme such as nbd://, nbds://, nbd+unix:// or nbds+unix://")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let isUnix: Bool
        let tls: Bool
        switch scheme {
        case "nbd": (isUnix, tls) = (false, false)
        case "nbds": (isUnix, tls) = (false, true)
        case "nbd+unix": (isUnix, tls) = (true, false)
        case "nbds+unix": (isUnix, tls) = (true, true)
        case "nbd+vsock", "nbds+vsock": throw fail("vsock transport is not supported")
        case "": throw fail("missing scheme")
        default: throw fail("unknown scheme '\(scheme)' (expected nbd, nbds, nbd+unix or nbds+unix)")
        }

        var rest = text[schemeEnd.upperBound...]
        if let hash = rest.firstIndex(of: "#") {
            throw fail("unexpected fragment '\(rest[hash...])' (write '#' in an export name as %23)")
        }
        var rawQuery: Substring?
        if let question = rest.firstIndex(of: "?") {
            rawQuery = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        let authority: Substring
        let rawPath: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            rawPath = rest[slash...]
        } else {
            authority = rest
            rawPath = ""
        }

        // Authority: [user@]host[:port]
        var hostPort = authority
        var user: String?
        if let at = authority.lastIndex(of: "@") {
            user = try URIPercentEncoding.decode(authority[..<at], what: "user name")
            hostPort = authority[authority.index(after: at)...]
        }
        var host = ""
        var rawPort: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw fail("IPv6 address is missing its closing ']'") }
            let literal = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            guard NBDURI.isIPv6Literal(literal) else { throw fail("'\(literal)' is not an IPv6 address") }
            host = literal
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected '\(after)' after the IPv6 address") }
                rawPort = after.dropFirst()
            }
        } else {
            if let colon = hostPort.lastIndex(of: ":") {
                rawPort = hostPort[hostPort.index(after: colon)...]
                hostPort = hostPort[..<colon]
            }
            if hostPort.contains("[") || hostPort.contains("]") {
                throw fail("misplaced '[' or ']' in host (IPv6 addresses look like [::1])")
            }
            if hostPort.contains(":") { throw fail("more than one ':' in host (IPv6 addresses need brackets)") }
            host = try URIPercentEncoding.decode(hostPort, what: "host")
            // A percent-encoded ':' would make the host an IPv6 address without brackets,
            // which no resolver takes and `description` cannot print back.
            if host.contains(":") { throw fail("':' in host (IPv6 addresses need brackets)") }
        }
        var port = NBDURI.defaultPort
        if let rawPort, !rawPort.isEmpty {
            guard rawPort.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let value = Int(rawPort), value >= 1, value <= 65535 else {
                throw fail("port '\(rawPort)' is not a number between 1 and 65535")
            }
            port = UInt16(value)
        }

        // Path: the export name is the path without its first '/'.
        let exportName = try URIPercentEncoding.decode(rawPath.dropFirst(), what: "export name")
        if exportName.utf8.count > 4096 { throw fail("export name is longer than 4096 bytes") }

        // Query: key=value pairs separated by '&' or ';'.
        var socket: String?
        var certificates: String?
        var pskFile: String?
        var verifyPeer: Bool?
        var tlsHostname: String?
        if let rawQuery {
            for pair in rawQuery.split(whereSeparator: { $0 == "&" || $0 == ";" }) {
                let key: String
                let rawValue: Substring
                if let equals = pair.firstIndex(of: "=") {
                    key = try URIPercentEncoding.decode(pair[..<equals], what: "query key").lowercased()
                    rawValue = pair[pair.index(after: equals)...]
                } else {
                    key = try URIPercentEncoding.decode(pair, what: "query key").lowercased()
                    rawValue = ""
                }
                if key.isEmpty { continue } // libnbd ignores "=value" alone
                switch key {
                case "socket":
                    // A leading %00 names a Linux abstract socket.
                    socket = try URIPercentEncoding.decode(rawValue, what: "socket path", allowNUL: true)
                case "tls-certificates":
                    certificates = try URIPercentEncoding.decode(rawValue, what: "tls-certificates")
                case "tls-psk-file":
                    pskFile = try URIPercentEncoding.decode(rawValue, what: "tls-psk-file")
                case "tls-hostname":
                    tlsHostname = try URIPercentEncoding.decode(rawValue, what: "tls-hostname")
                case "tls-verify-peer":
                    let value = try URIPercentEncoding.decode(rawValue, what: "tls-verify-peer")
                    guard let flag = NBDURI.parseBool(value) else {
                        throw fail("tls-verify-peer='\(value)' is not a boolean (use 1/true/yes/on or 0/false/no/off)")
                    }
                    verifyPeer = flag
                default:
                    throw fail("unknown query parameter '\(key)' (known: \(NBDURI.knownQueryKeys.joined(separator: ", ")))")
                }
            }
        }

        let transport: Transport
        if isUnix {
            guard let socket, !socket.isEmpty else {
                throw fail("\(scheme):// needs ?socket=PATH")
            }
            if !host.isEmpty || rawPort != nil {
                throw fail("\(scheme):// takes no host or port; the socket comes from ?socket=PATH")
            }
            transport = .unix(path: socket)
        } else {
            if socket != nil {
                throw fail("socket= is only valid with nbd+unix:// or nbds+unix:// (use \(tls ? "nbds+unix" : "nbd+unix")://)")
            }
            transport = .tcp(host: host.isEmpty ? "localhost" : host, port: port)
        }
        if !tls {
            let tlsKeys = [("tls-certificates", certificates != nil), ("tls-psk-file", pskFile != nil),
                           ("tls-verify-peer", verifyPeer != nil), ("tls-hostname", tlsHostname != nil)]
            if let used = tlsKeys.first(where: { $0.1 }) {
                throw fail("\(used.0) has no effect without TLS (use \(isUnix ? "nbds+unix" : "nbds")://)")
            }
        }
        if certificates != nil && pskFile != nil {
            throw fail("tls-certificates and tls-psk-file are mutually exclusive")
        }
        self.init(transport: transport, exportName: exportName, tlsPolicy: tls ? .require : .disable,
                  user: user, tlsCertificates: certificates, tlsPSKFile: pskFile,
                  tlsVerifyPeer: verifyPeer, tlsHostname: tlsHostname)
    }

    /// libnbd's boolean spellings.
    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "t", "yes", "y", "on": true
        case "0", "false", "f", "no", "n", "off": false
        default: nil
        }
    }

    static func isIPv6Literal(_ text: String) -> Bool {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1
    }

    /// True when `text` looks like a URI rather than a local path (used by `swiftnbd copy`).
    public static func looksLikeURI(_ text: String) -> Bool {
        guard let end = text.firstRange(of: "://") else { return false }
        return text[..<end.lowerBound].lowercased().hasPrefix("nbd")
    }
}
