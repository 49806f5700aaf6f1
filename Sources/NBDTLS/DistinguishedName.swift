/// An X.509 distinguished name as a set of `TYPE=value` attributes.
///
/// Two spellings of one subject are in use: GnuTLS/RFC 4514 print the most specific attribute
/// first (`CN=client,O=Example,C=GB`), certificate order and some tools print it last
/// (`C=GB,O=Example,CN=client`). Authorization compares DNs as *sets* so both spellings of
/// the same subject match. Values may contain RFC 4514 escapes (`\,`, `\+`, `\2C`).
public struct DistinguishedName: Sendable, Hashable, CustomStringConvertible {
    public struct Attribute: Sendable, Hashable, Comparable {
        /// Upper-cased attribute type, with common aliases folded (`E`/`EMAIL` → `EMAILADDRESS`, `S` → `ST`).
        public var type: String
        public var value: String
        public init(type: String, value: String) {
            self.type = Attribute.canonicalType(type)
            self.value = value
        }
        public static func < (a: Attribute, b: Attribute) -> Bool {
            (a.type, a.value) < (b.type, b.value)
        }
        static func canonicalType(_ type: String) -> String {
            let upper = type.uppercased()
            switch upper {
            case "E", "EMAIL": return "EMAILADDRESS"
            case "S": return "ST"
            default: return upper
            }
        }
    }

    /// Attributes in the order they were written.
    public var attributes: [Attribute]

    public init(attributes: [Attribute]) { self.attributes = attributes }

    /// Parses `CN=a,O=b\,c,C=GB` (either order, spaces around separators allowed).
    public init(parsing text: String) throws {
        var attributes: [Attribute] = []
        let scalars = Array(text.unicodeScalars)
        var index = 0
        func fail(_ why: String) -> TLSError {
            TLSError(.invalidArgument, "distinguished name '\(text)' is malformed: \(why)")
        }
        while index < scalars.count {
            // Attribute type up to '='.
            var type = ""
            while index < scalars.count, scalars[index] != "=" {
                if scalars[index] == "," || scalars[index] == "+" { throw fail("attribute '\(type)' has no '='") }
                type.unicodeScalars.append(scalars[index])
                index += 1
            }
            guard index < scalars.count else { throw fail("attribute '\(type)' has no '='") }
            index += 1 // '='
            type = type.trimmingSpaces()
            guard !type.isEmpty else { throw fail("an attribute has an empty type") }
            guard type.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "." || $0 == "-" }) else {
                throw fail("attribute type '\(type)' is not a name or OID")
            }
            // Value up to an unescaped ',' or '+'.
            var value: [UInt8] = []
            var trailingEscapedSpace = false
            while index < scalars.count, scalars[index] != ",", scalars[index] != "+" {
                let c = scalars[index]
                if c == "\\" {
                    guard index + 1 < scalars.count else { throw fail("it ends with a lone '\\'") }
                    let next = scalars[index + 1]
                    if index + 2 < scalars.count, let h = Character(next).hexDigitValue, let l = Character(scalars[index + 2]).hexDigitValue {
                        value.append(UInt8(h << 4 | l))
                        index += 3
                    } else {
                        value.append(contentsOf: Array(String(next).utf8))
                        trailingEscapedSpace = next == " "
                        index += 2
                    }
                    continue
                }
                trailingEscapedSpace = false
                value.append(contentsOf: Array(String(c).utf8))
                index += 1
            }
            if index < scalars.count { index += 1 } // separator
            var valueText = String(decoding: value, as: UTF8.self)
            valueText = trailingEscapedSpace ? valueText.trimmingLeadingSpaces() : valueText.trimmingSpaces()
            attributes.append(Attribute(type: type, value: valueText))
        }
        guard !attributes.isEmpty else { throw fail("it is empty") }
        self.attributes = attributes
    }

    /// True when both names hold the same attributes, in any order.
    public func matches(_ other: DistinguishedName) -> Bool {
        attributes.sorted() == other.attributes.sorted()
    }

    /// The name as written (attribute order preserved), RFC 4514 escaping.
    public var description: String {
        attributes.map { "\($0.type)=\(Self.escape($0.value))" }.joined(separator: ",")
    }

    /// The name with its attribute order reversed.
    public var reversed: DistinguishedName { DistinguishedName(attributes: attributes.reversed()) }

    static func escape(_ value: String) -> String {
        var out = ""
        let scalars = Array(value.unicodeScalars)
        for (i, c) in scalars.enumerated() {
            switch c {
            case ",", "+", "\"", "\\", "<", ">", ";", "=": out += "\\\(c)"
            case "#" where i == 0: out += "\\#"
            case " " where i == 0 || i == scalars.count - 1: out += "\\ "
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

extension DistinguishedName.Attribute: CustomStringConvertible {
    public var description: String { "\(type)=\(DistinguishedName.escape(value))" }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
    func trimmingLeadingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        return String(s)
    }
}

/// The set of client DNs a server accepts. Empty means "any verified client".
public struct DNAuthorizationList: Sendable, Equatable {
    public var allowed: [DistinguishedName]
    public init(_ allowed: [DistinguishedName] = []) { self.allowed = allowed }
    public init(parsing texts: [String]) throws { allowed = try texts.map { try DistinguishedName(parsing: $0) } }
    public var isEmpty: Bool { allowed.isEmpty }
    public func permits(_ name: DistinguishedName) -> Bool {
        allowed.isEmpty || allowed.contains { $0.matches(name) }
    }
}
