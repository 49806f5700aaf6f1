/// Information types inside `NBD_REP_INFO` and in INFO/GO requests (`NBD_INFO_*`, docs/protocol.md §2.5).
public struct NBDInfoType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// u64 size + u16 transmission flags; mandatory before a successful INFO/GO ACK.
    public static let export = NBDInfoType(rawValue: 0)
    /// Canonical export name.
    public static let name = NBDInfoType(rawValue: 1)
    /// Human-readable description.
    public static let description = NBDInfoType(rawValue: 2)
    /// u32 minimum, u32 preferred, u32 maximum payload.
    public static let blockSize = NBDInfoType(rawValue: 3)

    public var description: String {
        switch self {
        case .export: "NBD_INFO_EXPORT"
        case .name: "NBD_INFO_NAME"
        case .description: "NBD_INFO_DESCRIPTION"
        case .blockSize: "NBD_INFO_BLOCK_SIZE"
        default: "NBD_INFO_\(rawValue)"
        }
    }
}
