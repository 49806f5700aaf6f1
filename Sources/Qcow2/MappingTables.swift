import BlockDevices
import Foundation

/// The active L1 table (held in memory) and a bounded cache of L2 tables, behind one short lock.
///
/// L1 updates are write-through. L2 updates are write-back: `setEntryDeferred` changes the
/// cached entry at once (reads see it) and queues the disk write, which `takePending` +
/// `writePending` perform later — after the caller's sync has made the data and refcounts the
/// entries point at durable (qcow2.md §4 ordering). A table with queued entries is pinned in the
/// cache, so evicting it never loses an entry and a reload always sees the latest (qcow2.md §9
/// pitfall 6).
final class MappingTables: @unchecked Sendable {
    static let l1ReservedMask: UInt64 = 0x7F00_0000_0000_01FF

    private let lock = NSLock()
    private let file: HostFile
    private let geometry: Qcow2Geometry
    private let l1Offset: UInt64
    private var l1: [UInt64]
    private var tables: [UInt64: CachedTable] = [:]
    private var tick: UInt64 = 0
    /// L2 entries changed in memory, not yet written, in the order they changed.
    private var pending: [PendingEntry] = []
    /// Queued entries per table: such tables are never evicted.
    private var pinned: [UInt64: Int] = [:]

    /// An L2 entry changed in memory whose disk write is still to come; `old` is what the
    /// entry held before, so the clusters it no longer references can be freed once it is on disk.
    struct PendingEntry {
        var table: UInt64
        var index: Int
        var entry: L2Entry
        var old: L2Entry
    }
    private let capacity: Int

    private struct CachedTable {
        var words: [UInt64]
        var lastUse: UInt64
    }

    /// - Parameter cacheBytes: memory budget for cached L2 tables (at least 4 tables are kept).
    init(file: HostFile, geometry: Qcow2Geometry, l1Offset: UInt64, l1Size: Int, cacheBytes: UInt64 = 32 << 20) throws {
        self.file = file
        self.geometry = geometry
        self.l1Offset = l1Offset
        let bytes = l1Size == 0 ? [] : try file.readExactly(l1Size * 8, at: l1Offset, what: "L1 table")
        l1 = (0..<l1Size).map { bytes.be64(at: $0 * 8) }
        capacity = max(4, min(4096, Int(cacheBytes / geometry.clusterSize)))
    }

    var l1Count: Int { lock.withLock { l1.count } }

    /// L1 entry `index` (0 when outside the table).
    func l1Entry(_ index: Int) throws -> UInt64 {
        let e = lock.withLock { index < l1.count ? l1[index] : 0 }
        guard e & Self.l1ReservedMask == 0 else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: L1 entry \(index) has reserved bits set")
        }
        return e
    }

    /// L2 entry `index` of the table at `tableOffset`, loading the table if needed.
    func entry(table tableOffset: UInt64, index: Int) throws -> L2Entry {
        try lock.withLock {
            let words = try loadLocked(tableOffset)
            return geometry.extendedL2 ? L2Entry(word: words[2 * index], bitmap: words[2 * index + 1]) : L2Entry(word: words[index])
        }
    }

    /// A copy of a whole table (for copy-on-write of a shared table).
    func words(of tableOffset: UInt64) throws -> [UInt64] {
        try lock.withLock { try loadLocked(tableOffset) }
    }

    /// Changes an L2 entry in the cache now and queues its disk write. Returns how many
    /// entries are queued.
    @discardableResult
    func setEntryDeferred(table tableOffset: UInt64, index: Int, _ entry: L2Entry) throws -> Int {
        try lock.withLock {
            _ = try loadLocked(tableOffset)
            let old: L2Entry
            if geometry.extendedL2 {
                old = L2Entry(word: tables[tableOffset]!.words[2 * index], bitmap: tables[tableOffset]!.words[2 * index + 1])
                tables[tableOffset]!.words[2 * index] = entry.word
                tables[tableOffset]!.words[2 * index + 1] = entry.bitmap
            } else {
                old = L2Entry(word: tables[tableOffset]!.words[index])
                tables[tableOffset]!.words[index] = entry.word
            }
            pending.append(PendingEntry(table: tableOffset, index: index, entry: entry, old: old))
            pinned[tableOffset, default: 0] += 1
            return pending.count
        }
    }

    /// Hands over the queued entries (their tables stay pinned until `writePending`).
    func takePending() -> [PendingEntry] {
        lock.withLock {
            defer { pending = [] }
            return pending
        }
    }

    /// Puts back a batch that could not be committed, ahead of anything queued since.
    func requeue(_ batch: [PendingEntry]) {
        lock.withLock { pending = batch + pending }
    }

    /// Writes entries taken with `takePending`, in order, and unpins their tables.
    func writePending(_ batch: [PendingEntry]) throws {
        defer {
            lock.withLock {
                for e in batch {
                    pinned[e.table]! -= 1
                    if pinned[e.table] == 0 { pinned[e.table] = nil }
                }
                evictLocked()
            }
        }
        for e in batch {
            var bytes = [UInt8].be64(e.entry.word)
            if geometry.extendedL2 { bytes += [UInt8].be64(e.entry.bitmap) }
            try file.write(bytes, at: e.table + UInt64(e.index) * geometry.l2EntryBytes)
        }
    }

    /// Writes an L1 entry to disk, then to memory.
    func setL1(_ index: Int, _ value: UInt64) throws {
        try lock.withLock {
            try file.write([UInt8].be64(value), at: l1Offset + UInt64(index) * 8)
            l1[index] = value
        }
    }

    /// Puts a table the caller has just written to disk into the cache.
    func install(table tableOffset: UInt64, words: [UInt64]) {
        lock.withLock {
            tick += 1
            tables[tableOffset] = CachedTable(words: words, lastUse: tick)
            evictLocked()
        }
    }

    private func loadLocked(_ tableOffset: UInt64) throws -> [UInt64] {
        tick += 1
        if tables[tableOffset] != nil {
            tables[tableOffset]!.lastUse = tick
            return tables[tableOffset]!.words
        }
        guard tableOffset % geometry.clusterSize == 0, tableOffset != 0 else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: L2 table offset \(tableOffset) is not cluster aligned")
        }
        let bytes = try file.readExactly(Int(geometry.clusterSize), at: tableOffset, what: "L2 table")
        let words = (0..<Int(geometry.clusterSize / 8)).map { bytes.be64(at: $0 * 8) }
        tables[tableOffset] = CachedTable(words: words, lastUse: tick)
        evictLocked()
        return words
    }

    private func evictLocked() {
        while tables.count > capacity {
            // Lazily: no copy of the table dictionary on every load.
            guard let oldest = tables.lazy.filter({ self.pinned[$0.key] == nil })
                .min(by: { $0.value.lastUse < $1.value.lastUse })?.key else { return }
            tables.removeValue(forKey: oldest)
        }
    }
}
