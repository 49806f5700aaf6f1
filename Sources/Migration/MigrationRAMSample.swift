import QMP

/// One reading of the source's `query-migrate`: the RAM figures progress, the convergence
/// check and the report are made of. Every field is optional because QEMU only includes
/// what applies (no `ram` before setup ends, no `cpu-throttle-percentage` without
/// auto-converge, no `xbzrle-cache` without xbzrle); a missing or mistyped member is
/// simply absent, never a failure.
public struct MigrationRAMSample: Sendable, Equatable {
    /// QEMU's migration status (`active`, `postcopy-active`, `pre-switchover`, ...).
    public var status: String?
    public var transferredBytes: Int64?
    public var remainingBytes: Int64?
    public var totalBytes: Int64?
    /// `ram.dirty-pages-rate`: pages dirtied per second, measured by QEMU over the last
    /// dirty-bitmap sync period.
    public var dirtyPagesPerSecond: Int64?
    public var pageSize: Int64?
    /// `ram.mbps`: QEMU's recent throughput in megabits per second.
    public var megabitsPerSecond: Double?
    /// `ram.dirty-sync-count`: completed passes over the dirty bitmap (iteration number).
    public var iteration: Int64?
    /// `cpu-throttle-percentage` (auto-converge).
    public var throttlePercent: Int64?
    public var expectedDowntimeMilliseconds: Int64?
    public var postcopyRequests: Int64?
    /// Pages sent in full.
    public var normalPages: Int64?
    /// Pages found to be all zeroes and sent as a marker (QEMU calls them duplicate).
    public var duplicatePages: Int64?
    /// Pages not sent at all (older QEMUs; deprecated, usually 0).
    public var skippedPages: Int64?
    public var multifdBytes: Int64?
    public var xbzrlePages: Int64?
    public var xbzrleBytes: Int64?
    public var xbzrleCacheMisses: Int64?
    public var totalTimeMilliseconds: Int64?
    public var downtimeMilliseconds: Int64?
    public var setupTimeMilliseconds: Int64?
    public var errorDescription: String?

    public init() {}

    public init(queryMigrate info: QMPValue) {
        let ram = info["ram"]
        status = info["status"]?.stringValue
        transferredBytes = ram?["transferred"]?.intValue
        remainingBytes = ram?["remaining"]?.intValue
        totalBytes = ram?["total"]?.intValue
        dirtyPagesPerSecond = ram?["dirty-pages-rate"]?.intValue
        pageSize = ram?["page-size"]?.intValue
        megabitsPerSecond = ram?["mbps"]?.doubleValue
        iteration = ram?["dirty-sync-count"]?.intValue
        throttlePercent = info["cpu-throttle-percentage"]?.intValue
        expectedDowntimeMilliseconds = info["expected-downtime"]?.intValue
        postcopyRequests = ram?["postcopy-requests"]?.intValue
        normalPages = ram?["normal"]?.intValue
        duplicatePages = ram?["duplicate"]?.intValue
        skippedPages = ram?["skipped"]?.intValue
        multifdBytes = ram?["multifd-bytes"]?.intValue
        xbzrlePages = info["xbzrle-cache"]?["pages"]?.intValue
        xbzrleBytes = info["xbzrle-cache"]?["bytes"]?.intValue
        xbzrleCacheMisses = info["xbzrle-cache"]?["cache-miss"]?.intValue
        totalTimeMilliseconds = info["total-time"]?.intValue
        downtimeMilliseconds = info["downtime"]?.intValue
        setupTimeMilliseconds = info["setup-time"]?.intValue
        errorDescription = info["error-desc"]?.stringValue
    }

    /// Dirty rate in bytes per second (pages × page size; 4 KiB when QEMU omits the size).
    /// Saturating: a hostile peer's huge numbers give a huge rate, not a trap.
    public var dirtyBytesPerSecond: Double? {
        dirtyPagesPerSecond.map { Double($0) * Double(pageSize ?? 4096) }
    }

    /// Throughput in bytes per second (QEMU's megabits are 10^6 bits).
    public var bytesPerSecond: Double? {
        megabitsPerSecond.map { $0 * 1_000_000 / 8 }
    }
}
