import BlockDevices
import NBDClient
import NBDProtocol

/// `copy --dirty-bitmap NAME`: the planner's extents come from the source's
/// `qemu:dirty-bitmap:NAME` context (flag 1 = dirty) combined with `base:allocation`, both
/// answered by one BLOCK_STATUS round: clean runs are skipped, dirty runs that read as zero
/// become zero writes (so an incremental overlay records zero clusters instead of data), and
/// the remaining dirty runs are read and written.
struct DirtyBitmapExtentMap: CopyExtentMap {
    let source: RemoteExport
    let bitmapContext: UInt32
    /// nil when the server did not agree to `base:allocation`: dirty runs are then all data.
    let allocationContext: UInt32?
    let bitmapName: String

    static func contextName(_ bitmap: String) -> String { "qemu:dirty-bitmap:" + bitmap }

    /// Finds the agreed contexts of `source`, or explains why the bitmap is not there.
    init(source: RemoteExport, bitmap: String, label: String) throws {
        guard let id = source.export.metaContextID(Self.contextName(bitmap)) else {
            throw CopyFailure("source \(label) exports no dirty bitmap '\(bitmap)' (the server did not agree to "
                + "\(Self.contextName(bitmap)); qemu-nbd needs -B \(bitmap), QEMU's NBD server block-export-add bitmaps, swiftnbd serve --bitmap)")
        }
        self.source = source
        bitmapContext = id
        allocationContext = source.export.metaContextID("base:allocation")
        bitmapName = bitmap
    }

    func extents(offset: UInt64, length: UInt64) throws -> [PlannedExtent] {
        let byContext = try source.statusExtentsByContext(offset: offset, length: length)
        guard let dirty = byContext[bitmapContext], !dirty.isEmpty else {
            throw CopyFailure("the source's BLOCK_STATUS reply at \(offset) has no extents for dirty bitmap '\(bitmapName)'")
        }
        guard let allocationContext else {
            return DirtyExtentMerge.merge(dirty: dirty, allocation: [BlockStatusExtent(length: dirty.reduce(0) { $0 + $1.length }, flags: 0)])
        }
        guard let allocation = byContext[allocationContext], !allocation.isEmpty else {
            throw CopyFailure("the source's BLOCK_STATUS reply at \(offset) has no base:allocation extents")
        }
        return DirtyExtentMerge.merge(dirty: dirty, allocation: allocation)
    }
}

/// Planner extents from the combined runs: clean → skip, dirty zero → zero, dirty → data.
enum DirtyExtentMerge {
    static func merge(dirty: [BlockStatusExtent], allocation: [BlockStatusExtent]) -> [PlannedExtent] {
        DirtyBitmapStatus.combine(dirty: dirty, allocation: allocation).map { run in
            PlannedExtent(length: run.length, kind: !run.dirty ? .skip : run.zero ? .zero : .data)
        }
    }
}
