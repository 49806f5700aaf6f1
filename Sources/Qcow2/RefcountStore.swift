import BlockDevices

/// Reference counts of host clusters, and the allocator built on them.
///
/// Not thread-safe: the image calls it only under its allocation lock. Every change is written
/// through to disk at once (the caller decides when to sync), so the cache of refcount slices
/// (4 KiB of a block, bounded, least recently used evicted) holds clean copies only and can
/// drop any of them at any time. Ordering rules it follows itself:
/// * a new refcount block is written and synced before the table entry that points at it;
/// * a grown refcount table is written and synced before the header points at it, and the old
///   table is released only after that header write is synced.
/// A crash at any point therefore leaves counts that are too high (leaks), never too low.
final class RefcountStore {
    private let file: HostFile
    private let g: Qcow2Geometry
    private(set) var tableOffset: UInt64
    private(set) var tableClusters: UInt64
    private var table: [UInt64]
    /// Cached slices of refcount blocks, by the host offset of their first byte.
    private let slices: SliceCache
    private let sliceBytes: UInt64
    private let countersPerSlice: UInt64
    /// No cluster below this index has refcount 0 (first-fit search starts here).
    private var freeHint: UInt64 = 1
    /// The file is known to be at least this long (it never shrinks: freed clusters are
    /// punched, not truncated), so most allocations need no `fstat`.
    private var knownFileEnd: UInt64 = 0
    /// Whether the clusters of the last `allocate` lay past the end of the file, so that they
    /// read as zero without any zeroing.
    private(set) var lastAllocationWasFresh = false
    /// Writes of refcount metadata (counters, new blocks, table entries, grown tables, the
    /// header fields naming the table) so far, for metrics.
    private(set) var metadataWrites: UInt64 = 0

    static let tableReservedMask: UInt64 = 0x1FF

    /// Slices kept however small the configured cache (allocation touches one or two at a time).
    static let minimumSlices = 2

    init(file: HostFile, geometry: Qcow2Geometry, tableOffset: UInt64, tableClusters: UInt64, cacheBytes: UInt64) throws {
        self.file = file
        self.g = geometry
        self.tableOffset = tableOffset
        self.tableClusters = tableClusters
        sliceBytes = min(geometry.clusterSize, MappingTables.maxSliceBytes)
        countersPerSlice = sliceBytes * 8 / geometry.refcountBits
        slices = SliceCache(sliceBytes: Int(sliceBytes), capacityBytes: cacheBytes, minimumSlices: Self.minimumSlices)
        let bytes = try file.readExactly(Int(tableClusters * geometry.clusterSize), at: tableOffset, what: "refcount table")
        table = (0..<bytes.count / 8).map { bytes.be64(at: $0 * 8) }
        for (i, e) in table.enumerated() where e != 0 {
            guard e & Self.tableReservedMask == 0 else {
                throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: refcount table entry \(i) has reserved bits set")
            }
        }
    }

    /// Clusters the current table can describe.
    private var coveredClusters: UInt64 { UInt64(table.count) * g.refcountsPerBlock }

    // MARK: counters

    func count(_ cluster: UInt64) throws -> UInt64 {
        let ti = cluster / g.refcountsPerBlock
        guard ti < UInt64(table.count), table[Int(ti)] != 0 else { return 0 }
        let (key, index) = try locate(cluster)
        return try withSlice(key) { Self.read($0, index: index, bits: g.refcountBits) }
    }

    /// How the slice cache is doing (for logs and metrics).
    var statistics: Qcow2CacheStatistics { slices.statistics }

    /// Whether a refcount block describing `cluster` exists.
    func hasBlock(for cluster: UInt64) -> Bool {
        let ti = cluster / g.refcountsPerBlock
        return ti < UInt64(table.count) && table[Int(ti)] != 0
    }

    /// Clusters the current refcount table can describe.
    var describedClusters: UInt64 { coveredClusters }

    /// Overwrites a counter (refcount repair); its block must exist.
    func setCount(_ cluster: UInt64, _ value: UInt64) throws {
        guard hasBlock(for: cluster) else {
            throw BlockDeviceError(.io, "qcow2: no refcount block describes host cluster \(cluster)")
        }
        try setExisting(cluster, value)
        if value == 0 { freeHint = min(freeHint, cluster) }
    }

    /// Host offsets of the existing refcount blocks.
    var blockOffsets: [UInt64] { table.filter { $0 != 0 } }

    /// Sets a counter whose refcount block already exists, writing the changed bytes through.
    private func setExisting(_ cluster: UInt64, _ value: UInt64) throws {
        let (key, index) = try locate(cluster)
        let (start, length) = Self.byteRange(index: index, bits: g.refcountBits)
        guard start >= 0, start + length <= Int(sliceBytes) else {
            throw BlockDeviceError(.io, "qcow2: refcount of host cluster \(cluster) lies outside its slice")
        }
        let changed = try withSlice(key) { slice -> [UInt8] in
            var counters = slice
            Self.write(&counters, index: index, bits: g.refcountBits, value: value)
            return Array(slice[start..<start + length])
        }
        do {
            try file.write(changed, at: key + UInt64(start))
            metadataWrites &+= 1
        } catch {
            slices.forget(key)  // the cache must not hold what the disk does not
            throw error
        }
    }

    /// The slice holding `cluster`'s counter (its host offset) and the counter's index in it;
    /// the cluster's refcount block must exist.
    private func locate(_ cluster: UInt64) throws -> (key: UInt64, index: Int) {
        let ti = cluster / g.refcountsPerBlock
        guard ti < UInt64(table.count) else {
            throw BlockDeviceError(.io, "qcow2: host cluster \(cluster) lies beyond the refcount table")
        }
        let blockOffset = table[Int(ti)]
        guard blockOffset != 0, blockOffset % g.clusterSize == 0, blockOffset <= L2Entry.offsetMask else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: refcount block offset \(blockOffset) is not cluster aligned")
        }
        let inBlock = cluster % g.refcountsPerBlock
        return (blockOffset + inBlock / countersPerSlice * sliceBytes, Int(inBlock % countersPerSlice))
    }

    /// −1 on a cluster; a cluster reaching 0 becomes free for the allocator.
    func decrement(_ cluster: UInt64) throws {
        let c = try count(cluster)
        guard c > 0 else { throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: freeing host cluster \(cluster) whose refcount is already 0") }
        try setExisting(cluster, c - 1)
        if c == 1 {
            freeHint = min(freeHint, cluster)
            // Synchronous (under the allocation lock), so it can never hit a reallocated cluster.
            file.punchHole(at: cluster << g.clusterBits, length: g.clusterSize)
        }
    }

    // MARK: allocation

    /// Allocates `n` contiguous clusters (refcount 0 → 1) and returns the first host offset.
    /// The clusters may lie past the end of the file; the caller writes them before any reference.
    func allocate(_ n: UInt64 = 1) throws -> UInt64 {
        for _ in 0..<64 {
            let start = try findFree(n)
            var restart = false
            for c in start..<start + n {
                // A new refcount block may have taken one of the clusters we picked.
                if try ensureBlock(for: c) { restart = true; break }
            }
            if restart { continue }
            lastAllocationWasFresh = try makeInsideFile(start..<start + n)
            for c in start..<start + n { try setExisting(c, 1) }
            if n == 1 { freeHint = start + 1 }
            return start << g.clusterBits
        }
        throw BlockDeviceError(.io, "qcow2: cluster allocation did not converge")
    }

    /// Extends the file over `clusters` before their refcounts are raised. A crash between the
    /// refcount write and the caller's first write to a cluster leaves a leak, which the
    /// ordering allows; but a leaked cluster past the end of the file is one `qemu-img check`
    /// does not see (it counts clusters up to the file's length), so `check -r leaks` cannot
    /// repair it and it surfaces later, once the file has grown past it, as a leak nobody can
    /// explain. Returns whether the clusters lay past the end (so they read as zero).
    private func makeInsideFile(_ clusters: Range<UInt64>) throws -> Bool {
        let end = clusters.upperBound << g.clusterBits
        if end <= knownFileEnd { return false }
        let length = try file.extend(to: end)  // one fstat per allocation past the known end
        knownFileEnd = max(length, end)
        return clusters.lowerBound << g.clusterBits >= length
    }

    /// First run of `n` free clusters at or after the hint; past the table's coverage all are free.
    private func findFree(_ n: UInt64) throws -> UInt64 {
        var start = max(freeHint, 1)
        var run: UInt64 = 0
        var c = start
        while run < n {
            if c >= coveredClusters { return run == 0 ? c : start }
            if try count(c) == 0 {
                if run == 0 { start = c }
                run += 1
            } else {
                run = 0
            }
            c += 1
        }
        if n == 1 { freeHint = start }
        return start
    }

    /// Makes sure the refcount block covering `cluster` exists. Returns true when it had to
    /// allocate something (so a caller's earlier free-space search is stale).
    @discardableResult
    private func ensureBlock(for cluster: UInt64, depth: Int = 0) throws -> Bool {
        guard depth < 8 else { throw BlockDeviceError(.io, "qcow2: refcount block allocation recursed too deep") }
        let ti = cluster / g.refcountsPerBlock
        if ti >= UInt64(table.count) {
            try growTable(toCover: ti)
            return true
        }
        if table[Int(ti)] != 0 { return false }
        // Find a home for the new block. If it falls in the range the block itself describes,
        // the block counts itself; otherwise the block covering it must exist first.
        for _ in 0..<64 {
            let b = try findFree(1)
            let bti = b / g.refcountsPerBlock
            if bti == ti {
                var block = [UInt8](repeating: 0, count: Int(g.clusterSize))
                Self.write(&block, index: Int(b % g.refcountsPerBlock), bits: g.refcountBits, value: 1)
                try publishBlock(block, at: b << g.clusterBits, tableIndex: Int(ti))
                return true
            }
            if try ensureBlock(for: b, depth: depth + 1) { continue }
            // b is described by an existing block: count it there, then write the new block.
            _ = try makeInsideFile(b..<b + 1)
            try setExisting(b, 1)
            let block = [UInt8](repeating: 0, count: Int(g.clusterSize))
            try publishBlock(block, at: b << g.clusterBits, tableIndex: Int(ti))
            return true
        }
        throw BlockDeviceError(.io, "qcow2: refcount block allocation did not converge")
    }

    /// Writes a refcount block, syncs, then points the table at it.
    private func publishBlock(_ block: [UInt8], at offset: UInt64, tableIndex: Int) throws {
        try file.write(block, at: offset)
        metadataWrites &+= 1
        try file.sync()
        try file.write([UInt8].be64(offset), at: tableOffset + UInt64(tableIndex) * 8)
        metadataWrites &+= 1
        table[tableIndex] = offset
        forgetSlices(ofBlockAt: offset)
    }

    /// Replaces the refcount table by a larger one placed past everything the old table covers,
    /// together with fresh refcount blocks that describe the new table and themselves.
    private func growTable(toCover neededIndex: UInt64) throws {
        let perBlock = g.refcountsPerBlock
        let fileClusters = (try file.length() + g.clusterSize - 1) >> g.clusterBits
        let start = max(fileClusters, coveredClusters)
        var entries = max(neededIndex + 1, UInt64(table.count) * 2)
        var tableClustersNew: UInt64 = 0
        var blockCount: UInt64 = 1
        for _ in 0..<64 {
            tableClustersNew = (entries * 8 + g.clusterSize - 1) / g.clusterSize
            // Blocks needed to describe [start, start + table + blocks).
            blockCount = 1
            while (start + tableClustersNew + blockCount - 1) / perBlock - start / perBlock + 1 > blockCount { blockCount += 1 }
            let lastIndex = (start + tableClustersNew + blockCount - 1) / perBlock
            if lastIndex < entries { break }
            entries = lastIndex + 1
        }
        guard tableClustersNew * g.clusterSize <= Qcow2Header.maxRefcountTableBytes else {
            throw BlockDeviceError(.noSpace, "qcow2: refcount table would exceed 8 MiB")
        }
        let firstBlockIndex = start / perBlock
        guard firstBlockIndex + blockCount <= tableClustersNew * g.clusterSize / 8 else {
            throw BlockDeviceError(.io, "qcow2: refcount table growth did not converge")
        }
        var newTable = table + [UInt64](repeating: 0, count: Int(tableClustersNew * g.clusterSize / 8) - table.count)
        var newBlocks: [Int: [UInt8]] = [:]
        for j in 0..<blockCount {
            newBlocks[Int(firstBlockIndex + j)] = [UInt8](repeating: 0, count: Int(g.clusterSize))
            newTable[Int(firstBlockIndex + j)] = (start + tableClustersNew + j) << g.clusterBits
        }
        for c in start..<start + tableClustersNew + blockCount {
            guard newBlocks[Int(c / perBlock)] != nil else {
                throw BlockDeviceError(.io, "qcow2: refcount table growth left host cluster \(c) undescribed")
            }
            Self.write(&newBlocks[Int(c / perBlock), default: []], index: Int(c % perBlock), bits: g.refcountBits, value: 1)
        }
        for (index, block) in newBlocks {
            try file.write(block, at: newTable[index])
            metadataWrites &+= 1
        }
        var tableBytes = [UInt8](repeating: 0, count: newTable.count * 8)
        for (i, e) in newTable.enumerated() { tableBytes.putBE64(e, at: i * 8) }
        try file.write(tableBytes, at: start << g.clusterBits)
        metadataWrites &+= 1
        try file.sync()
        // Header bytes 48..59: refcount_table_offset and refcount_table_clusters, in one write.
        var headerBytes = [UInt8](repeating: 0, count: 12)
        headerBytes.putBE64(start << g.clusterBits, at: 0)
        headerBytes.putBE32(UInt32(tableClustersNew), at: 8)
        try file.write(headerBytes, at: 48)
        metadataWrites &+= 1
        try file.sync()
        let oldOffset = tableOffset, oldClusters = tableClusters
        table = newTable
        for index in newBlocks.keys { forgetSlices(ofBlockAt: newTable[index]) }
        tableOffset = start << g.clusterBits
        tableClusters = tableClustersNew
        for c in 0..<oldClusters { try decrement((oldOffset >> g.clusterBits) + c) }
    }

    /// Runs `body` on the cached slice at `key`, loading it from disk on a miss.
    private func withSlice<T>(_ key: UInt64, _ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
        try slices.withSlice(key, load: { try file.readExactly(into: $0, at: key, what: "refcount block") }, body)
    }

    /// Drops cached slices of a cluster that now holds a new refcount block.
    private func forgetSlices(ofBlockAt offset: UInt64) {
        var sliceStart: UInt64 = 0
        while sliceStart < g.clusterSize {
            slices.forget(offset + sliceStart)
            sliceStart += sliceBytes
        }
    }

    // MARK: packing

    /// Counters of 8 bits and more are big-endian integers; narrower ones are packed from the
    /// least significant bits of each byte upward.
    static func read<Block: Collection<UInt8>>(_ block: Block, index: Int, bits: UInt64) -> UInt64 where Block.Index == Int {
        if bits >= 8 {
            let n = Int(bits / 8)
            var v: UInt64 = 0
            for k in 0..<n { v = v << 8 | UInt64(block[index * n + k]) }
            return v
        }
        let perByte = 8 / Int(bits)
        let shift = UInt64((index % perByte)) * bits
        return (UInt64(block[index / perByte]) >> shift) & ((1 << bits) - 1)
    }

    static func write<Block: MutableCollection<UInt8>>(_ block: inout Block, index: Int, bits: UInt64, value: UInt64) where Block.Index == Int {
        if bits >= 8 {
            let n = Int(bits / 8)
            for k in 0..<n { block[index * n + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(n - 1 - k))) }
            return
        }
        let perByte = 8 / Int(bits)
        let shift = UInt64(index % perByte) * bits
        let mask = UInt8(truncatingIfNeeded: ((1 << bits) - 1) << shift)
        block[index / perByte] = (block[index / perByte] & ~mask) | (UInt8(truncatingIfNeeded: value << shift) & mask)
    }

    static func byteRange(index: Int, bits: UInt64) -> (Int, Int) {
        bits >= 8 ? (index * Int(bits / 8), Int(bits / 8)) : (index / (8 / Int(bits)), 1)
    }
}
