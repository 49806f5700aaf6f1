/// Structured/extended reply chunk flags (16 bits, docs/protocol.md §2.9). Clients ignore unknown bits.
public struct ReplyFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Last chunk of this request's reply.
    public static let done = ReplyFlags(rawValue: 1 << 0)

    public var description: String { describeBits(UInt64(rawValue), names: [(0x1, "DONE")]) }
}
