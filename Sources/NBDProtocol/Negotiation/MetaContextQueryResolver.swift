/// Maps LIST/SET_META_CONTEXT queries to the contexts an export offers.
///
/// - `base:allocation` selects/lists the allocation context; `base:` alone is a wildcard in LIST
///   and selects nothing in SET.
/// - `qemu:allocation-depth` when the export offers it; `qemu:` is a LIST wildcard for it.
/// - Everything else (unknown namespaces, unknown leaves, text without a colon) is ignored, as
///   the spec requires for unknown namespaces.
/// - LIST with no queries lists everything; SET with no queries selects nothing.
/// - The result has no duplicates and follows the order of the queries.
public struct MetaContextQueryResolver: Sendable {
    public let export: ExportDescriptor

    public init(export: ExportDescriptor) { self.export = export }

    /// Every context this export offers.
    public var offered: [NBDMetaContext] {
        export.offersAllocationDepth ? [.baseAllocation, .allocationDepth] : [.baseAllocation]
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
            case "qemu:" where listing: add(.allocationDepth)
            default: continue
            }
        }
        return result
    }
}
