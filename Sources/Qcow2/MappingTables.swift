import BlockDevices
import Foundation

/// The active L1 table (held in memory) and a bounded cache of L2 table slices, behind one
/// short lock.
///
/// Write-back with a fixed memory bound: `setEntryDeferred` and `setL1Deferred` change the
/// entry in memory at once (readers see it) and queue its disk write, which `takePending` +
/// `writePending` perform later — after the caller's sync has made the data, refcounts and new
/// tables the entries point at durable (docs/qcow2-driver.md, "ordering").
///
/// The cache itself holds clean slices only. A queued L2 entry lives in `unwritten` as well, and
/// a slice loaded from disk is overlaid with it, so any slice can be evicted at any moment —
/// under any pressure a load succeeds by evicting the least recently used slice, and nothing
/// queued is lost or read stale. Loads and evictions are O(1) (`LRUCache`); the queue is
/// bounded by the image (`Qcow2Image.maxPendingEntries`), not by the cache.
///
/// Slices are 4 KiB of a table (the whole table for clusters below 4 KiB), so a random 4 KiB
/// request costs one 4 KiB metadata read on a miss, not a whole 64 KiB–2 MiB table, and the
/// configured cache bytes cover that many more distinct guest regions.
final class MappingTables: @unchecked Sendable {
    static let l1ReservedMask: UInt64 = 0x7F00_0000_0000_01FF
    /// Bytes of an L2 table cached as one unit (at most; a smaller table is one slice).
    static let maxSliceBytes: UInt64 = 4096
    /// Slices kept however small the configured cache (a request touches at most a few).
    static let minimumSlices = 4

    private let lock = NSLock()
    private let file: HostFile
    private let geometry: Qcow2Geometry
    private let l1Offset: UInt64
    private var l1: [UInt64]
    let sliceBytes: UInt64
    private let entryBytes: Int
    private let entriesPerSlice: Int
    /// Cached slices (raw big-endian table bytes) by the host offset of their first byte.
    private let slices: SliceCache
    /// The latest queued, not yet written value of each L2 entry, by slice and index in slice.
    private var unwritten: [UInt64: [Int: Unwritten]] = [:]
    private var pendingL2: [PendingEntry] = []
    private var pendingL1: [PendingL1] = []
    private var sequence: UInt64 = 0
    /// L1 and L2 entries written to disk so far (guarded by `lock`; for metrics).
    private var l1EntriesWritten: UInt64 = 0
    private var l2EntriesWritten: UInt64 = 0

    private struct Unwritten {
        var sequence: UInt64
        var entry: L2Entry
    }

    /// An L2 entry changed in memory whose disk write is still to come; `old` is what the
    /// entry held before, so the clusters it no longer references can be freed once it is on disk.
    struct PendingEntry {
        var table: UInt64
        var index: Int
        var entry: L2Entry
        var old: L2Entry
        fileprivate var sequence: UInt64 = 0
    }

    /// An L1 entry changed in memory whose disk write is still to come; `replacedTable` is the
    /// (shared) table it pointed at before, freed once the new entry is durable (0: none).
    struct PendingL1 {
        var index: Int
        var value: UInt64
        var replacedTable: UInt64
    }

    /// Queued metadata writes handed to a commit.
    struct PendingBatch {
        var l1: [PendingL1] = []
        var l2: [PendingEntry] = []
        var isEmpty: Bool { l1.isEmpty && l2.isEmpty }
    }

    /// - Parameter cacheBytes: memory budget for cached L2 slices (at least `minimumSlices`).
    init(file: HostFile, geometry: Qcow2Geometry, l1Offset: UInt64, l1Size: Int, cacheBytes: UInt64) throws {
        self.file = file
        self.geometry = geometry
        self.l1Offset = l1Offset
        let bytes = l1Size == 0 ? [] : try file.readExactly(l1Size * 8, at: l1Offset, what: "L1 table")
        l1 = (0..<l1Size).map { bytes.be64(at: $0 * 8) }
        sliceBytes = min(geometry.clusterSize, Self.maxSliceBytes)
        entryBytes = Int(geometry.l2EntryBytes)
        entriesPerSlice = Int(sliceBytes / geometry.l2EntryBytes)
        slices = SliceCache(sliceBytes: Int(sliceBytes), capacityBytes: cacheBytes, minimumSlices: Self.minimumSlices)
    }

    var l1Count: Int { lock.withLock { l1.count } }

    /// Slices the cache holds at most, and how often it was asked / went to disk.
    var statistics: Qcow2CacheStatistics { lock.withLock { slices.statistics } }

    /// L1 and L2 entries written to disk so far.
    var entriesWritten: (l1: UInt64, l2: UInt64) { lock.withLock { (l1EntriesWritten, l2EntriesWritten) } }

    /// L1 entry `index` (0 when outside the table).
    func l1Entry(_ index: Int) throws -> UInt64 {
        let e = lock.withLock { index >= 0 && index < l1.count ? l1[index] : 0 }
        guard e & Self.l1ReservedMask == 0 else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: L1 entry \(index) has reserved bits set")
        }
        return e
    }

    /// L2 entry `index` of the table at `tableOffset`, loading its slice if needed.
    func entry(table tableOffset: UInt64, index: Int) throws -> L2Entry {
        try lock.withLock {
            let (key, slot) = try locate(table: tableOffset, index: index)
            return try withSliceLocked(key) { decode($0, slot: slot) }
        }
    }

    /// The bytes of a whole table with the queued entries applied (for copy-on-write of a
    /// table shared with a snapshot). Read straight from disk: a 2 MiB table must not flush the cache.
    func tableBytes(of tableOffset: UInt64) throws -> [UInt8] {
        try lock.withLock {
            try checkTableOffset(tableOffset)
            var bytes = try file.readExactly(Int(geometry.clusterSize), at: tableOffset, what: "L2 table")
            bytes.withUnsafeMutableBytes { raw in
                var sliceStart = 0
                while sliceStart < raw.count {
                    let slice = UnsafeMutableRawBufferPointer(rebasing: raw[sliceStart..<min(raw.count, sliceStart + Int(sliceBytes))])
                    applyUnwritten(to: slice, key: tableOffset + UInt64(sliceStart))
                    sliceStart += Int(sliceBytes)
                }
            }
            return bytes
        }
    }

    /// Changes an L2 entry in memory now and queues its disk write. Returns how many metadata
    /// writes are queued.
    @discardableResult
    func setEntryDeferred(table tableOffset: UInt64, index: Int, _ entry: L2Entry) throws -> Int {
        try lock.withLock {
            let (key, slot) = try locate(table: tableOffset, index: index)
            let old = try withSliceLocked(key) { slice -> L2Entry in
                defer { encode(entry, into: slice, slot: slot) }
                return decode(slice, slot: slot)
            }
            sequence &+= 1
            unwritten[key, default: [:]][slot] = Unwritten(sequence: sequence, entry: entry)
            pendingL2.append(PendingEntry(table: tableOffset, index: index, entry: entry, old: old, sequence: sequence))
            return pendingL2.count + pendingL1.count
        }
    }

    /// Points L1 entry `index` at a new table in memory now and queues the disk write. The
    /// table must already be written (a commit's sync makes it durable before the entry).
    @discardableResult
    func setL1Deferred(_ index: Int, _ value: UInt64, replacing replacedTable: UInt64) throws -> Int {
        try lock.withLock {
            guard index >= 0, index < l1.count else {
                throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: L1 index \(index) outside the table of \(l1.count) entries")
            }
            l1[index] = value
            pendingL1.append(PendingL1(index: index, value: value, replacedTable: replacedTable))
            return pendingL2.count + pendingL1.count
        }
    }

    /// Hands over the queued writes (they stay visible through `unwritten` until written).
    func takePending() -> PendingBatch {
        lock.withLock {
            defer { pendingL1 = []; pendingL2 = [] }
            return PendingBatch(l1: pendingL1, l2: pendingL2)
        }
    }

    /// Puts back a batch that could not be committed, ahead of anything queued since.
    func requeue(_ batch: PendingBatch) {
        lock.withLock {
            pendingL1 = batch.l1 + pendingL1
            pendingL2 = batch.l2 + pendingL2
        }
    }

    /// Writes a batch taken with `takePending`, L1 entries first, L2 entries in the order they
    /// changed. On an I/O error the part not written is queued again (still visible in memory)
    /// and the error is rethrown.
    func writePending(_ batch: PendingBatch) throws {
        var l1Written = 0
        defer { if l1Written > 0 { lock.withLock { l1EntriesWritten &+= UInt64(l1Written) } } }
        for (i, e) in batch.l1.enumerated() {
            do {
                try file.write([UInt8].be64(e.value), at: l1Offset + UInt64(e.index) * 8)
            } catch {
                requeue(PendingBatch(l1: Array(batch.l1[i...]), l2: batch.l2))
                throw error
            }
            l1Written += 1
        }
        var written = 0
        defer { forgetWritten(batch.l2[0..<written]) }
        for e in batch.l2 {
            var bytes = [UInt8].be64(e.entry.word)
            if geometry.extendedL2 { bytes += [UInt8].be64(e.entry.bitmap) }
            do {
                try file.write(bytes, at: e.table + UInt64(e.index) * geometry.l2EntryBytes)
            } catch {
                requeue(PendingBatch(l1: [], l2: Array(batch.l2[written...])))
                throw error
            }
            written += 1
        }
    }

    /// Drops the overlay of entries now on disk, unless a newer value was queued meanwhile.
    private func forgetWritten(_ entries: ArraySlice<PendingEntry>) {
        guard !entries.isEmpty else { return }
        lock.withLock {
            l2EntriesWritten &+= UInt64(entries.count)
            for e in entries {
                let bytesIn = UInt64(e.index) * geometry.l2EntryBytes
                let key = e.table + bytesIn / sliceBytes * sliceBytes
                let slot = Int((bytesIn % sliceBytes) / geometry.l2EntryBytes)
                guard unwritten[key]?[slot]?.sequence == e.sequence else { continue }
                unwritten[key]?[slot] = nil
                if unwritten[key]?.isEmpty == true { unwritten[key] = nil }
            }
        }
    }

    /// Forgets cached slices of a cluster that is about to become a new L2 table (it may have
    /// been a table before it was freed).
    func forgetTable(at tableOffset: UInt64) {
        lock.withLock {
            var sliceStart: UInt64 = 0
            while sliceStart < geometry.clusterSize {
                slices.forget(tableOffset + sliceStart)
                sliceStart += sliceBytes
            }
        }
    }

    // MARK: - slices

    /// The slice key and the entry's index inside the slice.
    private func locate(table tableOffset: UInt64, index: Int) throws -> (key: UInt64, slot: Int) {
        try checkTableOffset(tableOffset)
        guard index >= 0, UInt64(index) < geometry.l2Entries else {
            throw BlockDeviceError(.badFormat, "qcow2: L2 index \(index) outside a table of \(geometry.l2Entries) entries")
        }
        let slice = index / entriesPerSlice
        return (tableOffset + UInt64(slice) * sliceBytes, index % entriesPerSlice)
    }

    private func checkTableOffset(_ tableOffset: UInt64) throws {
        guard tableOffset != 0, tableOffset % geometry.clusterSize == 0, tableOffset <= L2Entry.offsetMask else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: L2 table offset \(tableOffset) is not cluster aligned")
        }
    }

    /// Runs `body` on the slice at `key`, from the cache or from disk overlaid with its queued entries.
    private func withSliceLocked<T>(_ key: UInt64, _ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
        try slices.withSlice(key, load: { buffer in
            try file.readExactly(into: buffer, at: key, what: "L2 table")
            applyUnwritten(to: buffer, key: key)
        }, body)
    }

    /// Overlays the queued, not yet written entries of the slice at `key`.
    private func applyUnwritten(to slice: UnsafeMutableRawBufferPointer, key: UInt64) {
        for (slot, queued) in unwritten[key] ?? [:] { encode(queued.entry, into: slice, slot: slot) }
    }

    private func decode(_ slice: UnsafeMutableRawBufferPointer, slot: Int) -> L2Entry {
        let at = slot * entryBytes
        guard slot >= 0, at + entryBytes <= slice.count else { return .unallocated }  // unreachable: slot < entriesPerSlice
        let word = UInt64(bigEndian: slice.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        guard entryBytes == 16 else { return L2Entry(word: word) }
        return L2Entry(word: word, bitmap: UInt64(bigEndian: slice.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
    }

    private func encode(_ entry: L2Entry, into slice: UnsafeMutableRawBufferPointer, slot: Int) {
        let at = slot * entryBytes
        guard slot >= 0, at + entryBytes <= slice.count else { return }
        slice.storeBytes(of: entry.word.bigEndian, toByteOffset: at, as: UInt64.self)
        if entryBytes == 16 { slice.storeBytes(of: entry.bitmap.bigEndian, toByteOffset: at + 8, as: UInt64.self) }
    }
}

/// How a qcow2 metadata cache is doing (for logs and metrics).
public struct Qcow2CacheStatistics: Sendable, Equatable {
    public var capacityBytes: UInt64
    public var cachedBytes: UInt64
    public var hits: UInt64
    public var misses: UInt64
    public var evictions: UInt64
}
