/// Metadata contexts this implementation can serve.
public enum NBDMetaContext: Hashable, Sendable, CustomStringConvertible {
    /// `base:allocation`: HOLE/ZERO bits (`AllocationStateFlags`).
    case baseAllocation
    /// `qemu:allocation-depth`: the backing-chain depth providing the data.
    case allocationDepth
    /// `qemu:dirty-bitmap:NAME`: bit 0 (`NBD_STATE_DIRTY`) set where the bitmap is dirty.
    /// `index` is the bitmap's position in the export's list (it fixes the context id).
    case dirtyBitmap(name: String, index: Int)

    public var name: String {
        switch self {
        case .baseAllocation: NBDMetaContextName.baseAllocation
        case .allocationDepth: NBDMetaContextName.allocationDepth
        case .dirtyBitmap(let name, _): NBDMetaContextName.dirtyBitmapPrefix + name
        }
    }

    /// The id a SET_META_CONTEXT reply assigns (unique per context, stable per server):
    /// 1 and 2, then 3, 4, … for the export's bitmaps in the order they were configured.
    public var contextID: UInt32 {
        switch self {
        case .baseAllocation: 1
        case .allocationDepth: 2
        case .dirtyBitmap(_, let index): Self.firstDirtyBitmapID &+ UInt32(truncatingIfNeeded: index)
        }
    }

    public static let firstDirtyBitmapID: UInt32 = 3

    /// The bitmap's name for a dirty-bitmap context, else nil.
    public var dirtyBitmapName: String? {
        if case .dirtyBitmap(let name, _) = self { name } else { nil }
    }

    public var description: String { name }
}
