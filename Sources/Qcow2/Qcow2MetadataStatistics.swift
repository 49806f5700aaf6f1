/// How this image's metadata caches and metadata writes are doing, for logs and metrics
/// (`swiftnbd serve --metrics`). Counters only grow; each image of a backing chain has its own
/// (these are the served image's).
public struct Qcow2MetadataStatistics: Sendable, Equatable {
    /// The L2 slice cache.
    public var l2Cache: Qcow2CacheStatistics
    /// The refcount slice cache; nil for an image opened read-only (it never touches refcounts).
    public var refcountCache: Qcow2CacheStatistics?
    /// L1 entries written.
    public var l1Writes: UInt64
    /// L2 entries written, plus whole L2 tables written when they were created or copied.
    public var l2Writes: UInt64
    /// Refcount writes: counters, new refcount blocks, table entries, grown tables.
    public var refcountWrites: UInt64
}

extension Qcow2Image {
    /// A snapshot of the metadata counters. Takes the image's short locks one at a time (never
    /// nested), so it can be called from any thread while requests run.
    public var metadataStatistics: Qcow2MetadataStatistics {
        let entries = tables.entriesWritten
        let l2Cache = tables.statistics
        let (refcountCache, refcountWrites, l2Tables) = allocationLock.withLock {
            (refcountStore?.statistics, refcountStore?.metadataWrites ?? 0, l2TablesWritten)
        }
        return Qcow2MetadataStatistics(l2Cache: l2Cache, refcountCache: refcountCache, l1Writes: entries.l1,
                                       l2Writes: entries.l2 &+ l2Tables, refcountWrites: refcountWrites)
    }
}
