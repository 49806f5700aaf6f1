/// RFC 3986 percent-decoding and -encoding over bytes (never over Characters: `%0D%0A`
/// would otherwise become one grapheme).
enum URIPercentEncoding {
    /// Which characters may stay unencoded when building a URI.
    enum Component {
        case userinfo, host, path, queryValue
    }

    /// Decodes `%XY` escapes. Throws on a truncated or non-hex escape, on bytes that are not
    /// UTF-8, and (unless `allowNUL`) on an encoded NUL.
    static func decode(_ text: Substring, what: String, allowNUL: Bool = false) throws -> String {
        let input = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let byte = input[i]
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                i += 1
                continue
            }
            guard i + 2 < input.count, let high = hexValue(input[i + 1]), let low = hexValue(input[i + 2]) else {
                let escape = String(decoding: input[i..<min(i + 3, input.count)], as: UTF8.self)
                throw NBDClientError(.invalidURI, "\(what) has a malformed percent escape '\(escape)' (expected %XY with two hex digits)")
            }
            let decoded = high << 4 | low
            if decoded == 0 && !(allowNUL && bytes.isEmpty) {
                throw NBDClientError(.invalidURI, "\(what) contains an encoded NUL byte (%00)")
            }
            bytes.append(decoded)
            i += 3
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw NBDClientError(.invalidURI, "\(what) is not valid UTF-8 after percent-decoding")
        }
        return string
    }

    static func encode(_ text: String, allowing component: Component) -> String {
        var out = ""
        for byte in text.utf8 {
            if isAllowed(byte, in: component) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let digits = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 15)]], as: UTF8.self)
            }
        }
        return out
    }

    private static func isAllowed(_ byte: UInt8, in component: Component) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        case UInt8(ascii: "/"):
            return component == .path || component == .queryValue
        case UInt8(ascii: ":"):
            return component == .path || component == .queryValue
        default:
            return false
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
