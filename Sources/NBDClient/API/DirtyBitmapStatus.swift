import NBDProtocol

/// One run of a range seen through a dirty bitmap and `base:allocation` together.
public struct DirtyAllocationRun: Equatable, Sendable {
    public var length: UInt64
    /// Bit 0 of the `qemu:dirty-bitmap:NAME` flags: written since the bitmap started.
    public var dirty: Bool
    /// `NBD_STATE_ZERO` of base:allocation; always false for clean runs (their contents do not
    /// matter to an incremental copy).
    public var zero: Bool

    public init(length: UInt64, dirty: Bool, zero: Bool) {
        self.length = length
        self.dirty = dirty
        self.zero = zero
    }
}

/// Combines the two contexts' extents of one BLOCK_STATUS reply (both start at the request's
/// offset, and each may cover a different length).
public enum DirtyBitmapStatus {
    /// Covers the shorter of the two lists; neighbouring runs that are alike are joined.
    public static func combine(dirty: [BlockStatusExtent], allocation: [BlockStatusExtent]) -> [DirtyAllocationRun] {
        var result: [DirtyAllocationRun] = []
        var d = 0, a = 0
        var dirtyLeft = dirty.first?.length ?? 0
        var allocationLeft = allocation.first?.length ?? 0
        while d < dirty.count && a < allocation.count {
            if dirtyLeft == 0 {
                d += 1
                if d < dirty.count { dirtyLeft = dirty[d].length }
                continue
            }
            if allocationLeft == 0 {
                a += 1
                if a < allocation.count { allocationLeft = allocation[a].length }
                continue
            }
            let step = min(dirtyLeft, allocationLeft)
            let isDirty = dirty[d].flags & 1 != 0
            let run = DirtyAllocationRun(length: step, dirty: isDirty, zero: isDirty && allocation[a].flags & 2 != 0)
            if let last = result.last, last.dirty == run.dirty, last.zero == run.zero {
                result[result.count - 1].length += step
            } else {
                result.append(run)
            }
            dirtyLeft -= step
            allocationLeft -= step
        }
        return result
    }
}
