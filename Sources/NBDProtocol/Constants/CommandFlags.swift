/// Request flags (16 bits, docs/protocol.md §2.8).
public struct CommandFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Force unit access; any command when SEND_FUA is advertised.
    public static let fua = CommandFlags(rawValue: 1 << 0)
    /// WRITE_ZEROES: the range must end up allocated.
    public static let noHole = CommandFlags(rawValue: 1 << 1)
    /// READ: don't fragment (one content chunk); only with SEND_DF.
    public static let dontFragment = CommandFlags(rawValue: 1 << 2)
    /// BLOCK_STATUS: exactly one extent per context.
    public static let requestOne = CommandFlags(rawValue: 1 << 3)
    /// WRITE_ZEROES: fail quickly with ENOTSUP unless zeroing is fast.
    public static let fastZero = CommandFlags(rawValue: 1 << 4)
    /// Extended headers: `length` is a payload length.
    public static let payloadLength = CommandFlags(rawValue: 1 << 5)

    /// Spec names.
    public static let DF = dontFragment
    public static let REQ_ONE = requestOne
    public static let PAYLOAD_LEN = payloadLength

    public static let known: CommandFlags = [.fua, .noHole, .dontFragment, .requestOne, .fastZero, .payloadLength]

    public var description: String {
        describeBits(UInt64(rawValue), names: [
            (0x1, "FUA"), (0x2, "NO_HOLE"), (0x4, "DF"), (0x8, "REQ_ONE"), (0x10, "FAST_ZERO"), (0x20, "PAYLOAD_LEN"),
        ])
    }
}
