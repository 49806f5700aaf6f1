/// Option reply types (`NBD_REP_*`, docs/protocol.md §2.4). Any value with bit 31 set is an error
/// whose payload, if any, is a human-readable message.
public struct NBDReplyType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let ack = NBDReplyType(rawValue: 1)
    public static let server = NBDReplyType(rawValue: 2)
    public static let info = NBDReplyType(rawValue: 3)
    public static let metaContext = NBDReplyType(rawValue: 4)

    private static let errorBit: UInt32 = 1 << 31
    public static let errUnsupported = NBDReplyType(rawValue: errorBit | 1)
    public static let errPolicy = NBDReplyType(rawValue: errorBit | 2)
    public static let errInvalid = NBDReplyType(rawValue: errorBit | 3)
    public static let errPlatform = NBDReplyType(rawValue: errorBit | 4)
    public static let errTLSRequired = NBDReplyType(rawValue: errorBit | 5)
    public static let errUnknown = NBDReplyType(rawValue: errorBit | 6)
    public static let errShutdown = NBDReplyType(rawValue: errorBit | 7)
    public static let errBlockSizeRequired = NBDReplyType(rawValue: errorBit | 8)
    public static let errTooBig = NBDReplyType(rawValue: errorBit | 9)
    public static let errExtendedHeaderRequired = NBDReplyType(rawValue: errorBit | 10)

    /// True for every error reply type, known or not.
    public var isError: Bool { rawValue & Self.errorBit != 0 }

    public var description: String {
        switch self {
        case .ack: "NBD_REP_ACK"
        case .server: "NBD_REP_SERVER"
        case .info: "NBD_REP_INFO"
        case .metaContext: "NBD_REP_META_CONTEXT"
        case .errUnsupported: "NBD_REP_ERR_UNSUP"
        case .errPolicy: "NBD_REP_ERR_POLICY"
        case .errInvalid: "NBD_REP_ERR_INVALID"
        case .errPlatform: "NBD_REP_ERR_PLATFORM"
        case .errTLSRequired: "NBD_REP_ERR_TLS_REQD"
        case .errUnknown: "NBD_REP_ERR_UNKNOWN"
        case .errShutdown: "NBD_REP_ERR_SHUTDOWN"
        case .errBlockSizeRequired: "NBD_REP_ERR_BLOCK_SIZE_REQD"
        case .errTooBig: "NBD_REP_ERR_TOO_BIG"
        case .errExtendedHeaderRequired: "NBD_REP_ERR_EXT_HEADER_REQD"
        default: isError ? "NBD_REP_ERR_0x\(String(rawValue, radix: 16))" : "NBD_REP_\(rawValue)"
        }
    }
}
