/// What negotiation needs to know about one export. Built by the server engine from its
/// `BlockDevice` (NBDProtocol does not import BlockDevices).
public struct ExportDescriptor: Hashable, Sendable {
    /// Canonical name (what LIST and NBD_INFO_NAME report).
    public var name: String
    /// Display text for LIST and NBD_INFO_DESCRIPTION; may be empty.
    public var description: String
    /// Size in bytes.
    public var size: UInt64
    /// Flags the device supports. `HAS_FLAGS` is added, and `SEND_DF` is managed by negotiation
    /// (advertised only with structured replies or extended headers), so callers need not set them.
    /// `SEND_FAST_ZERO` is dropped without `SEND_WRITE_ZEROES`; `BLOCK_STATUS_PAYLOAD` and
    /// `SEND_RESIZE` are never advertised (not implemented).
    public var transmissionFlags: TransmissionFlags
    /// Advertised with NBD_INFO_BLOCK_SIZE; enforced on clients that asked for it in GO.
    public var blockSizes: NBDBlockSizes
    /// Only reachable after STARTTLS (hidden from plaintext LIST in `.on` mode).
    public var tlsOnly: Bool
    /// Offers the `qemu:allocation-depth` metadata context.
    public var offersAllocationDepth: Bool
    /// Names of the dirty bitmaps offered as `qemu:dirty-bitmap:NAME`, in configured order.
    public var dirtyBitmaps: [String]

    public init(name: String, description: String = "", size: UInt64,
                transmissionFlags: TransmissionFlags = [.hasFlags],
                blockSizes: NBDBlockSizes = .serverDefault, tlsOnly: Bool = false,
                offersAllocationDepth: Bool = false, dirtyBitmaps: [String] = []) {
        self.name = name
        self.description = description
        self.size = size
        self.transmissionFlags = transmissionFlags
        self.blockSizes = blockSizes
        self.tlsOnly = tlsOnly
        self.offersAllocationDepth = offersAllocationDepth
        self.dirtyBitmaps = dirtyBitmaps
    }

    /// The flags to advertise on a connection with (or without) structured replies/extended headers.
    public func advertisedFlags(structuredOrExtended: Bool) -> TransmissionFlags {
        var flags = transmissionFlags
        flags.insert(.hasFlags)
        flags.remove(.sendDF)
        flags.remove(.blockStatusPayload)
        flags.remove(.sendResize)
        if !flags.contains(.sendWriteZeroes) { flags.remove(.sendFastZero) }
        if structuredOrExtended { flags.insert(.sendDF) }
        return flags
    }
}
