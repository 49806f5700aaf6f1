import BlockDevices

/// Repairs the refcounts of a dirty image (lazy refcounts, not closed cleanly) before we write
/// to it, as QEMU does on a read-write open: count every reference from the metadata, write
/// the counts that differ, sync, then clear the dirty bit (synced).
///
/// References counted (the same walk `qemu-img check` does): the header cluster, the refcount
/// table and blocks, the active L1 table, the snapshot table and every snapshot's L1 table, each
/// L2 table once per L1 entry that points at it, and each data cluster once per L2 entry (each
/// host cluster a compressed stream touches, once per stream). Images whose metadata needs new
/// refcount blocks, references past the end of the file, or counts beyond the refcount width
/// are refused with a pointer to `qemu-img check -r all`.
struct RefcountRebuilder {
    let file: HostFile
    let header: Qcow2Header
    let geometry: Qcow2Geometry
    let store: RefcountStore
    private var counts: [UInt64: UInt64] = [:]

    init(file: HostFile, header: Qcow2Header, geometry: Qcow2Geometry, store: RefcountStore) {
        self.file = file
        self.header = header
        self.geometry = geometry
        self.store = store
    }

    private func refuse(_ why: String) -> BlockDeviceError {
        BlockDeviceError(.unsupportedFeature, "qcow2: \(file.path) was not closed cleanly (dirty bit) and cannot be repaired here: \(why); repair it with 'qemu-img check -r all'")
    }

    private mutating func reference(_ offset: UInt64, bytes: UInt64) {
        guard bytes > 0 else { return }
        let first = offset >> geometry.clusterBits, last = (offset + bytes - 1) >> geometry.clusterBits
        for c in first...last { counts[c, default: 0] += 1 }
    }

    /// Counts the tree below one L1 table.
    private mutating func walk(l1Offset: UInt64, entries: UInt32) throws {
        guard entries > 0 else { return }
        guard UInt64(entries) * 8 <= Qcow2Header.maxL1Bytes else { throw refuse("an L1 table is too large") }
        reference(l1Offset, bytes: UInt64(entries) * 8)
        let l1 = try file.readExactly(Int(entries) * 8, at: l1Offset, what: "L1 table")
        for i in 0..<Int(entries) {
            let table = l1.be64(at: i * 8) & L2Entry.offsetMask
            guard table != 0 else { continue }
            reference(table, bytes: geometry.clusterSize)
            let bytes = try file.readExactly(Int(geometry.clusterSize), at: table, what: "L2 table")
            for j in 0..<Int(geometry.l2Entries) {
                let word = bytes.be64(at: j * Int(geometry.l2EntryBytes))
                if word & L2Entry.compressedFlag != 0 {
                    let d = try CompressedDescriptor(word: word, geometry: geometry)
                    for c in d.hostClusters(geometry: geometry) { counts[c, default: 0] += 1 }
                } else if word & L2Entry.offsetMask != 0 {
                    reference(word & L2Entry.offsetMask, bytes: geometry.clusterSize)
                }
            }
        }
    }

    /// Walks the snapshot table: fixed 40-byte part, extra data, id and name, padded to 8.
    private mutating func walkSnapshots() throws {
        guard header.snapshotCount > 0 else { return }
        var position = header.snapshotsOffset
        let limit: UInt64 = 64 << 20
        for _ in 0..<header.snapshotCount {
            let fixed = try file.readExactly(40, at: position, what: "snapshot table")
            let l1Offset = fixed.be64(at: 0), l1Entries = fixed.be32(at: 8)
            let idLength = UInt64(fixed.be16(at: 12)), nameLength = UInt64(fixed.be16(at: 14))
            let extra = UInt64(fixed.be32(at: 36))
            guard l1Offset % geometry.clusterSize == 0 else { throw refuse("a snapshot L1 table is not cluster aligned") }
            try walk(l1Offset: l1Offset, entries: l1Entries)
            position += (40 + extra + idLength + nameLength + 7) / 8 * 8
            guard position - header.snapshotsOffset <= limit else { throw refuse("the snapshot table is too large") }
        }
        reference(header.snapshotsOffset, bytes: position - header.snapshotsOffset)
    }

    /// Counts, writes the differences, syncs, clears the dirty bit. Returns how many counters changed.
    @discardableResult
    mutating func repair() throws -> Int {
        reference(0, bytes: geometry.clusterSize)
        reference(store.tableOffset, bytes: store.tableClusters * geometry.clusterSize)
        for block in store.blockOffsets { reference(block, bytes: geometry.clusterSize) }
        try walk(l1Offset: header.l1TableOffset, entries: header.l1Size)
        try walkSnapshots()

        let fileClusters = (try file.length() + geometry.clusterSize - 1) >> geometry.clusterBits
        for (cluster, count) in counts {
            guard cluster < fileClusters else { throw refuse("metadata references host cluster \(cluster) past the end of the file") }
            guard count <= geometry.maxRefcount else { throw refuse("host cluster \(cluster) has more references than the refcount width allows") }
            guard store.hasBlock(for: cluster) else { throw refuse("host cluster \(cluster) has no refcount block") }
        }
        var changed = 0
        let end = min(max(fileClusters, 1), store.describedClusters)
        for cluster in 0..<end where store.hasBlock(for: cluster) {
            let wanted = counts[cluster] ?? 0
            if try store.count(cluster) != wanted {
                try store.setCount(cluster, wanted)
                changed += 1
            }
        }
        try file.sync()
        let cleared = header.incompatible.subtracting(.dirty).rawValue
        try file.write([UInt8].be64(cleared), at: 72)
        try file.sync()
        return changed
    }
}
