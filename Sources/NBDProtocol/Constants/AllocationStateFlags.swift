/// Status bits of the `base:allocation` metadata context (docs/protocol.md §2.11).
/// Other bits are reserved: send 0, ignore on receipt.
public struct AllocationStateFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Not allocated in backing storage (NBD_STATE_HOLE).
    public static let hole = AllocationStateFlags(rawValue: 1 << 0)
    /// Reads return zeroes (NBD_STATE_ZERO).
    public static let zero = AllocationStateFlags(rawValue: 1 << 1)

    public var description: String { describeBits(UInt64(rawValue), names: [(0x1, "HOLE"), (0x2, "ZERO")]) }
}

/// Metadata-context names this implementation understands.
public enum NBDMetaContextName {
    public static let baseAllocation = "base:allocation"
    public static let allocationDepth = "qemu:allocation-depth"
    public static let dirtyBitmapPrefix = "qemu:dirty-bitmap:"
}
