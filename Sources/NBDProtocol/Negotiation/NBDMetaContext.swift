/// Metadata contexts this implementation can serve.
public enum NBDMetaContext: Hashable, Sendable, CustomStringConvertible {
    /// `base:allocation`: HOLE/ZERO bits (`AllocationStateFlags`).
    case baseAllocation
    /// `qemu:allocation-depth`: the backing-chain depth providing the data.
    case allocationDepth

    public var name: String {
        switch self {
        case .baseAllocation: NBDMetaContextName.baseAllocation
        case .allocationDepth: NBDMetaContextName.allocationDepth
        }
    }

    /// The id a SET_META_CONTEXT reply assigns (unique per context, stable per server).
    public var contextID: UInt32 {
        switch self {
        case .baseAllocation: 1
        case .allocationDepth: 2
        }
    }

    public var description: String { name }
}
