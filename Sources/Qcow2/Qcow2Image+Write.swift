import BlockDevices

extension Qcow2Image {
    /// An L2 entry change, applied in memory at once and on disk by `commitMappings`.
    struct L2Update {
        var table: UInt64
        var index: Int
        var entry: L2Entry
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        try checkWritable()
        try checkRange(offset, UInt64(data.count))
        if data.count > 0 {
            recordChange(offset: offset, length: UInt64(data.count))
            try inFlight.withClusters(clusterRange(offset, UInt64(data.count))) {
                try writeLocked(data, at: offset)
            }
        }
        if fua { try syncAndReleasePending() }
    }

    public func flush() throws {
        try checkOpen()
        if writable {
            try writeBackBitmaps()
            try syncAndReleasePending()
        }
    }

    func clusterRange(_ offset: UInt64, _ length: UInt64) -> ClosedRange<UInt64> {
        (offset >> geometry.clusterBits)...((offset + length - 1) >> geometry.clusterBits)
    }

    /// Writes with the guest clusters already claimed.
    func writeLocked(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        let g = geometry
        var updates: [L2Update] = []
        var cursor = offset
        let end = offset + UInt64(data.count)
        while cursor < end {
            let inCluster = g.offsetInCluster(cursor)
            let n = min(g.clusterSize - inCluster, end - cursor)
            let piece = UnsafeRawBufferPointer(rebasing: data[Int(cursor - offset)..<Int(cursor - offset + n)])
            let table = try writableL2Table(for: cursor)
            let index = g.l2Index(cursor)
            let entry = try tables.entry(table: table, index: index)
            if isWritableInPlace(entry) {
                try file.write(piece, at: entry.hostOffset + inCluster)
            } else if n < g.clusterSize, readsAsZero(entry), let host = try allocateZeroedCluster() {
                // The rest of the new cluster must read as zero: the file system zeroes it
                // (no 64 KiB of zeroes written for a 4 KiB write), then only the new bytes land.
                try file.write(piece, at: host + inCluster)
                updates.append(L2Update(table: table, index: index, entry: L2Entry(word: host | L2Entry.copiedFlag)))
            } else {
                // Copy-on-write: the new cluster gets what the guest sees now, overlaid with the
                // new bytes, and is written whole before anything points at it.
                let clusterStart = g.clusterStart(cursor)
                var buffer = [UInt8](repeating: 0, count: Int(g.clusterSize))
                try buffer.withUnsafeMutableBytes { raw in
                    if n < g.clusterSize {
                        let visible = Int(min(g.clusterSize, size - clusterStart))
                        try readGuest(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<visible]), at: clusterStart)
                    }
                    UnsafeMutableRawBufferPointer(rebasing: raw[Int(inCluster)..<Int(inCluster + n)]).copyMemory(from: piece)
                }
                let host = try allocateCluster()
                try file.write(buffer, at: host)
                var newEntry = L2Entry(word: host | L2Entry.copiedFlag)
                if g.extendedL2 { newEntry.bitmap = L2Entry.allSubclustersAllocated }
                updates.append(L2Update(table: table, index: index, entry: newEntry))
            }
            cursor += n
        }
        // The L2 entries reach the disk only after a sync has made this data (and the refcount
        // increments of its clusters) durable: see commitMappings().
        try apply(updates)
    }

    /// Whether the whole cluster reads as zero without looking at any data: a zero cluster, or
    /// an unallocated one with no backing file below it. (Extended L2 entries are left to the
    /// general path: their subclusters can mix.)
    func readsAsZero(_ e: L2Entry) -> Bool {
        guard !geometry.extendedL2, !e.isCompressed else { return false }
        if e.word & L2Entry.zeroFlag != 0 { return true }
        return e.word == 0 && backing == nil
    }

    /// A new cluster whose bytes the file system has zeroed (`FALLOC_FL_ZERO_RANGE`), or nil,
    /// with nothing allocated, where that is not supported (the caller writes zeroes itself).
    func allocateZeroedCluster() throws -> UInt64? {
        let allocation = try allocationLock.withLock { () -> (host: UInt64, fresh: Bool)? in
            guard zeroRangeWorks, let store = refcountStore else { return nil }
            return (try store.allocate(), store.lastAllocationWasFresh)
        }
        guard let (host, fresh) = allocation else { return nil }
        // A cluster that lay past the end of the file reads as zero already (the allocator
        // only extended the file over it; nothing else can write into it before we do).
        if fresh { return host }
        if file.zeroRange(at: host, length: geometry.clusterSize) { return host }
        try allocationLock.withLock {
            zeroRangeWorks = false
            try refcountStore?.decrement(host >> geometry.clusterBits)
        }
        return nil
    }

    /// An entry whose host cluster belongs to this L2 slot alone and holds all of its data.
    func isWritableInPlace(_ e: L2Entry) -> Bool {
        guard !e.isCompressed, e.isCopied, e.hostOffset != 0, e.word & L2Entry.zeroFlag == 0 else { return false }
        return !geometry.extendedL2 || e.bitmap == L2Entry.allSubclustersAllocated
    }

    /// Changes L2 entries in memory and queues their disk writes (`commitMappings`). A client
    /// that never flushes still gets its metadata written once enough has queued up.
    func apply(_ updates: [L2Update]) throws {
        var queued = 0
        for u in updates { queued = try tables.setEntryDeferred(table: u.table, index: u.index, u.entry) }
        if queued >= Self.maxPendingEntries { try commitMappings() }
        let backlog = allocationLock.withLock { pendingFrees.count }
        // Freed clusters must not stay out of reach for ever either.
        if backlog >= Self.maxPendingFrees { try syncAndReleasePending() }
    }

    /// Queued L1/L2 entries before a writer commits them itself (bounds the memory the queue
    /// and its overlay take, whatever the cache size).
    static let maxPendingEntries = 8192
    /// Freed clusters held back before a sync is forced to release them.
    static let maxPendingFrees = 4096

    /// Writes the queued L2 entries: first a sync, so everything they point at (data, and the
    /// refcounts of new clusters) is durable before any entry on disk references it; then the
    /// entries in the order they changed. The clusters they stopped referencing are freed by the
    /// next `syncAndReleasePending`, once the entries themselves are durable. Commits run one
    /// at a time, so an older entry can never overwrite a newer one on disk.
    func commitMappings() throws {
        try commitLock.withLock {
            let batch = tables.takePending()
            guard !batch.isEmpty else { return }
            do {
                try file.sync()
            } catch {
                tables.requeue(batch)  // still in memory; written by a later commit
                throw error
            }
            try tables.writePending(batch)
            var released: [UInt64] = batch.l1.compactMap { $0.replacedTable == 0 ? nil : $0.replacedTable >> geometry.clusterBits }
            for e in batch.l2 { released += hostClusters(of: e.old, replacedBy: e.entry) }
            if !released.isEmpty { allocationLock.withLock { pendingFrees += released } }
        }
    }

    /// Host clusters an entry references that the replacing entry does not keep.
    func hostClusters(of old: L2Entry, replacedBy new: L2Entry) -> [UInt64] {
        if old.isCompressed {
            guard let d = try? CompressedDescriptor(word: old.word, geometry: geometry) else { return [] }
            return Array(d.hostClusters(geometry: geometry))
        }
        let host = old.hostOffset
        guard host != 0, new.isCompressed || new.hostOffset != host else { return [] }
        return [host >> geometry.clusterBits]
    }

    func allocateCluster() throws -> UInt64 {
        try allocationLock.withLock {
            guard let store = refcountStore else { throw BlockDeviceError(.readOnly, "qcow2: image is read-only") }
            return try store.allocate()
        }
    }

    /// The L2 table for `guest`, made private to the active L1 (allocated, or copied if shared
    /// with a snapshot). Returns its host offset.
    ///
    /// The new table is written (not synced) and the L1 entry changed in memory; the entry
    /// reaches the disk with the next commit, after the sync that makes the table durable, so
    /// a sweep over a multi-TiB disk costs no sync per new table.
    func writableL2Table(for guest: UInt64) throws -> UInt64 {
        let index = geometry.l1Index(guest)
        let current = try tables.l1Entry(index)
        if current & L2Entry.copiedFlag != 0 && current & L2Entry.offsetMask != 0 { return current & L2Entry.offsetMask }
        return try allocationLock.withLock {
            let current = try tables.l1Entry(index)  // another request may have done it meanwhile
            let old = current & L2Entry.offsetMask
            if current & L2Entry.copiedFlag != 0 && old != 0 { return old }
            guard let store = refcountStore else { throw BlockDeviceError(.readOnly, "qcow2: image is read-only") }
            let bytes = old == 0 ? [UInt8](repeating: 0, count: Int(geometry.clusterSize)) : try tables.tableBytes(of: old)
            let table = try store.allocate()
            tables.forgetTable(at: table)
            try file.write(bytes, at: table)
            l2TablesWritten &+= 1
            try tables.setL1Deferred(index, table | L2Entry.copiedFlag, replacing: old)
            return table
        }
    }

    /// Commits the queued L2 entries, syncs the file, then applies the refcount decrements
    /// queued before the sync started.
    func syncAndReleasePending() throws {
        try commitMappings()
        let frees = allocationLock.withLock { () -> [UInt64] in defer { pendingFrees = [] }; return pendingFrees }
        do {
            try file.sync()
        } catch {
            allocationLock.withLock { pendingFrees = frees + pendingFrees }
            throw error
        }
        guard !frees.isEmpty else { return }
        try allocationLock.withLock {
            guard let store = refcountStore else { return }
            for c in frees { try store.decrement(c) }
        }
    }
}
