/// Flags the server sends in the 16-bit newstyle greeting field (docs/protocol.md §2.2).
public struct HandshakeFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let fixedNewstyle = HandshakeFlags(rawValue: 1 << 0)
    public static let noZeroes = HandshakeFlags(rawValue: 1 << 1)

    /// Every bit this implementation knows.
    public static let known: HandshakeFlags = [.fixedNewstyle, .noZeroes]

    public var description: String {
        describeBits(UInt64(rawValue), names: [(0x1, "FIXED_NEWSTYLE"), (0x2, "NO_ZEROES")])
    }
}

/// Flags the client answers the greeting with (32 bits, docs/protocol.md §2.2).
public struct ClientFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let fixedNewstyle = ClientFlags(rawValue: 1 << 0)
    public static let noZeroes = ClientFlags(rawValue: 1 << 1)

    /// Every bit this implementation knows.
    public static let known: ClientFlags = [.fixedNewstyle, .noZeroes]

    public var description: String {
        describeBits(UInt64(rawValue), names: [(0x1, "C_FIXED_NEWSTYLE"), (0x2, "C_NO_ZEROES")])
    }
}

/// Renders a bit field as `A|B|0x40` for logs and test failures.
func describeBits(_ value: UInt64, names: [(UInt64, String)]) -> String {
    var parts: [String] = []
    var rest = value
    for (bit, name) in names where value & bit != 0 {
        parts.append(name)
        rest &= ~bit
    }
    if rest != 0 { parts.append("0x" + String(rest, radix: 16)) }
    return parts.isEmpty ? "[]" : parts.joined(separator: "|")
}
