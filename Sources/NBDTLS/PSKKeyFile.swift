#if canImport(Glibc)
import Glibc
#endif

/// A GnuTLS `psktool` key file: one `identity:HEXKEY` per line; the hex text is decoded into
/// the binary key (GnuTLS's `GNUTLS_PSK_KEY_HEX`). Parsed as bytes (a `"\r\n"` is one Swift
/// Character), with a trailing `\r` stripped; blank lines and `#` comments are skipped.
public struct PSKKeyFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var identity: String
        public var key: [UInt8]
        public init(identity: String, key: [UInt8]) {
            self.identity = identity
            self.key = key
        }
    }

    public var entries: [Entry]
    public init(entries: [Entry]) { self.entries = entries }

    /// The key for `identity`, first match wins (as in GnuTLS).
    public func key(for identity: String) -> [UInt8]? {
        entries.first { $0.identity == identity }?.key
    }

    /// Parses file contents; `source` names the file in error messages.
    public init(parsing bytes: [UInt8], source: String = "PSK file") throws {
        var entries: [Entry] = []
        var lineNumber = 0
        for rawLine in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = Array(rawLine)
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            if line.first == UInt8(ascii: "#") { continue }
            func fail(_ why: String) -> TLSError {
                TLSError(.credentials, "\(source) line \(lineNumber): \(why) (expected 'identity:hexkey')")
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw fail("no ':' separator") }
            let identityBytes = Array(line[..<colon])
            let hex = Array(line[(colon + 1)...])
            guard !identityBytes.isEmpty else { throw fail("empty identity") }
            guard let identity = String(validating: identityBytes, as: UTF8.self) else { throw fail("identity is not valid UTF-8") }
            guard !hex.isEmpty else { throw fail("empty key for identity '\(identity)'") }
            guard hex.count % 2 == 0 else { throw fail("key for identity '\(identity)' has an odd number of hex digits") }
            var key: [UInt8] = []
            key.reserveCapacity(hex.count / 2)
            var index = 0
            while index < hex.count {
                guard let high = Self.hexValue(hex[index]), let low = Self.hexValue(hex[index + 1]) else {
                    throw fail("key for identity '\(identity)' contains a non-hex character")
                }
                key.append(high << 4 | low)
                index += 2
            }
            entries.append(Entry(identity: identity, key: key))
        }
        guard !entries.isEmpty else { throw TLSError(.credentials, "\(source) contains no keys") }
        self.entries = entries
    }

    /// Reads and parses a key file.
    public init(contentsOf path: String) throws {
        try self.init(parsing: try readWholeFile(path, what: "PSK key file"), source: path)
    }

    /// The file text for these entries (what `psktool` writes).
    public func serialized() -> String {
        entries.map { "\($0.identity):\($0.key.map { Self.hexDigits($0) }.joined())\n" }.joined()
    }

    static func hexDigits(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

import CGnuTLS

/// Cryptographically strong random bytes (GnuTLS's key-grade generator).
public func randomBytes(_ count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    try gnutlsCheck(gnutls_rnd(GNUTLS_RND_KEY, &bytes, count), .x509, "cannot generate random bytes")
    return bytes
}
