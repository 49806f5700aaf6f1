/// One extent of a `BLOCK_STATUS` reply: a run of bytes and its context-defined flags
/// (`base:allocation`: bit 0 HOLE, bit 1 ZERO; `qemu:allocation-depth`: the depth;
/// `qemu:dirty-bitmap:*`: bit 0 DIRTY). 64-bit flags so extended replies fit.
public struct BlockStatusExtent: Sendable, Hashable {
    public var length: UInt64
    public var flags: UInt64
    public init(length: UInt64, flags: UInt64) {
        self.length = length
        self.flags = flags
    }
}

/// The status chunks of one `BLOCK_STATUS` reply, by context id.
public struct BlockStatusReply: Sendable, Hashable {
    public var extentsByContext: [UInt32: [BlockStatusExtent]]
    public init(extentsByContext: [UInt32: [BlockStatusExtent]] = [:]) {
        self.extentsByContext = extentsByContext
    }
}
