/// Maps LIST/SET_META_CONTEXT queries to the contexts an export offers.
///
/// - `base:allocation` selects/lists the allocation context; `base:` alone is a wildcard in LIST
///   and selects nothing in SET.
/// - `qemu:allocation-depth` when the export offers it; `qemu:dirty-bitmap:NAME` for each
///   bitmap the export offers. In LIST, `qemu:` is a wildcard for all of these and
///   `qemu:dirty-bitmap:` for all bitmaps; in SET both select nothing (as QEMU's server).
/// - Everything else (unknown namespaces, unknown leaves, unknown bitmaps, text without a
///   colon) is ignored, as the spec requires for unknown namespaces.
/// - LIST with no queries lists everything; SET with no queries selects nothing.
/// - The result has no duplicates and follows the order of the queries.
public struct MetaContextQueryResolver: Sendable {
    public let export: ExportDescriptor

    public init(export: ExportDescriptor) { self.export = export }

    private var bitmaps: [NBDMetaContext] {
        export.dirtyBitmaps.enumerated().map { .dirtyBitmap(name: $0.element, index: $0.offset) }
    }

    /// Every context this export offers.
    public var offered: [NBDMetaContext] {
        (export.offersAllocationDepth ? [.baseAllocation, .allocationDepth] : [.baseAllocation]) + bitmaps
    }

    public func contexts(for queries: [String], listing: Bool) -> [NBDMetaContext] {
        if queries.isEmpty { return listing ? offered : [] }
        var result: [NBDMetaContext] = []
        func add(_ context: NBDMetaContext) {
            if offered.contains(context) && !result.contains(context) { result.append(context) }
        }
        for query in queries {
            switch query {
            case NBDMetaContextName.baseAllocation: add(.baseAllocation)
            case NBDMetaContextName.allocationDepth: add(.allocationDepth)
            case "base:" where listing: add(.baseAllocation)
            case "qemu:" where listing:
                add(.allocationDepth)
                bitmaps.forEach(add)
            case NBDMetaContextName.dirtyBitmapPrefix where listing: bitmaps.forEach(add)
            default:
                guard query.hasPrefix(NBDMetaContextName.dirtyBitmapPrefix) else { continue }
                let leaf = String(query.dropFirst(NBDMetaContextName.dirtyBitmapPrefix.count))
                if let index = export.dirtyBitmaps.firstIndex(of: leaf) { add(.dirtyBitmap(name: leaf, index: index)) }
            }
        }
        return result
    }
}
