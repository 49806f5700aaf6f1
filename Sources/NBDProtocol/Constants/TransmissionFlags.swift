/// Per-export transmission flags (16 bits, docs/protocol.md §2.6).
public struct TransmissionFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Must always be set.
    public static let hasFlags = TransmissionFlags(rawValue: 1 << 0)
    public static let readOnly = TransmissionFlags(rawValue: 1 << 1)
    public static let sendFlush = TransmissionFlags(rawValue: 1 << 2)
    public static let sendFUA = TransmissionFlags(rawValue: 1 << 3)
    public static let rotational = TransmissionFlags(rawValue: 1 << 4)
    public static let sendTrim = TransmissionFlags(rawValue: 1 << 5)
    public static let sendWriteZeroes = TransmissionFlags(rawValue: 1 << 6)
    /// Only with structured replies or extended headers.
    public static let sendDF = TransmissionFlags(rawValue: 1 << 7)
    public static let canMultiConn = TransmissionFlags(rawValue: 1 << 8)
    /// Experimental (extension-resize branch).
    public static let sendResize = TransmissionFlags(rawValue: 1 << 9)
    public static let sendCache = TransmissionFlags(rawValue: 1 << 10)
    /// Only together with `sendWriteZeroes`.
    public static let sendFastZero = TransmissionFlags(rawValue: 1 << 11)
    /// Payload form of BLOCK_STATUS; extended headers only.
    public static let blockStatusPayload = TransmissionFlags(rawValue: 1 << 12)

    public var description: String {
        describeBits(UInt64(rawValue), names: [
            (0x1, "HAS_FLAGS"), (0x2, "READ_ONLY"), (0x4, "SEND_FLUSH"), (0x8, "SEND_FUA"),
            (0x10, "ROTATIONAL"), (0x20, "SEND_TRIM"), (0x40, "SEND_WRITE_ZEROES"), (0x80, "SEND_DF"),
            (0x100, "CAN_MULTI_CONN"), (0x200, "SEND_RESIZE"), (0x400, "SEND_CACHE"),
            (0x800, "SEND_FAST_ZERO"), (0x1000, "BLOCK_STATUS_PAYLOAD"),
        ])
    }
}
