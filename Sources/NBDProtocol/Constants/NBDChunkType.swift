/// Structured/extended reply chunk types (`NBD_REPLY_TYPE_*`, docs/protocol.md §2.9).
/// Types with bit 15 set are errors and share the `error, msglen, msg` prefix.
public struct NBDChunkType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let none = NBDChunkType(rawValue: 0)
    public static let offsetData = NBDChunkType(rawValue: 1)
    public static let offsetHole = NBDChunkType(rawValue: 2)
    public static let blockStatus = NBDChunkType(rawValue: 5)
    /// Extended-headers mode only.
    public static let blockStatusExtended = NBDChunkType(rawValue: 6)
    public static let error = NBDChunkType(rawValue: (1 << 15) | 1)
    public static let errorOffset = NBDChunkType(rawValue: (1 << 15) | 2)

    /// True for every error chunk type, known or not.
    public var isError: Bool { rawValue & (1 << 15) != 0 }

    public var description: String {
        switch self {
        case .none: "NBD_REPLY_TYPE_NONE"
        case .offsetData: "NBD_REPLY_TYPE_OFFSET_DATA"
        case .offsetHole: "NBD_REPLY_TYPE_OFFSET_HOLE"
        case .blockStatus: "NBD_REPLY_TYPE_BLOCK_STATUS"
        case .blockStatusExtended: "NBD_REPLY_TYPE_BLOCK_STATUS_EXT"
        case .error: "NBD_REPLY_TYPE_ERROR"
        case .errorOffset: "NBD_REPLY_TYPE_ERROR_OFFSET"
        default: "NBD_REPLY_TYPE_0x\(String(rawValue, radix: 16))"
        }
    }
}

/// The spec calls it "chunk type"; this alias matches that wording.
public typealias ChunkType = NBDChunkType
