import BlockDevices
import Foundation

/// The active L1 table (held in memory) and a bounded cache of L2 tables, behind one short lock.
///
/// Updates are write-through: the on-disk entry is written before the cached copy changes, under
/// the same lock, so evicting a table never loses anything and a reload always sees the latest
/// entries (qcow2.md §9 pitfall 6). Ordering against data and refcounts is the caller's job.
final class MappingTables: @unchecked Sendable {
    static let l1ReservedMask: UInt64 = 0x7F00_0000_0000_01FF

    private let lock = NSLock()
    private let file: HostFile
    private let geometry: Qcow2Geometry
    private let l1Offset: UInt64
    private var l1: [UInt64]
    private var tables: [UInt64: CachedTable] = [:]
    private var tick: UInt64 = 0
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

    /// Writes an L2 entry to disk, then to the cache.
    func setEntry(table tableOffset: UInt64, index: Int, _ entry: L2Entry) throws {
        try lock.withLock {
            _ = try loadLocked(tableOffset)
            var bytes = [UInt8].be64(entry.word)
            if geometry.extendedL2 { bytes += [UInt8].be64(entry.bitmap) }
            try file.write(bytes, at: tableOffset + UInt64(index) * geometry.l2EntryBytes)
            if geometry.extendedL2 {
                tables[tableOffset]!.words[2 * index] = entry.word
                tables[tableOffset]!.words[2 * index + 1] = entry.bitmap
            } else {
                tables[tableOffset]!.words[index] = entry.word
            }
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
            guard let oldest = tables.min(by: { $0.value.lastUse < $1.value.lastUse })?.key else { return }
            tables.removeValue(forKey: oldest)
        }
    }
}
