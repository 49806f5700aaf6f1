import BlockDevices

extension Qcow2Image {
    public func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {
        try checkWritable()
        try checkRange(offset, length)
        if length > 0 {
            try inFlight.withClusters(clusterRange(offset, length)) {
                let pieces = clusterPieces(offset, length)
                if fastOnly, pieces.contains(where: { !$0.whole || !canZeroByMetadata }) {
                    throw BlockDeviceError(.notSupported, "qcow2: zeroing this range needs data writes")
                }
                // Every byte of the range now reads as zero: a change of content as far as
                // the bitmaps know (as for QEMU, even where it read as zero before).
                recordChange(offset: offset, length: length)
                var updates: [L2Update] = []
                for piece in pieces {
                    if piece.whole && canZeroByMetadata {
                        if let u = try zeroEntryUpdate(at: piece.offset, unmap: mayTrim) { updates.append(u) }
                    } else {
                        let zeros = [UInt8](repeating: 0, count: Int(piece.length))
                        try zeros.withUnsafeBytes { try writeLocked($0, at: piece.offset) }
                    }
                }
                try apply(updates)
            }
        }
        if fua { try syncAndReleasePending() }
    }

    /// Discards whole clusters only (as QEMU does); partial clusters are left alone, which the
    /// NBD TRIM contract allows. v3 images keep discarded clusters reading as zero; v2 images
    /// without a backing file drop the mapping; v2 over a backing file ignores discard (it
    /// would expose backing data).
    public func trim(offset: UInt64, length: UInt64, fua: Bool) throws {
        try checkWritable()
        try checkRange(offset, length)
        if length > 0 {
            try inFlight.withClusters(clusterRange(offset, length)) {
                var updates: [L2Update] = []
                for piece in clusterPieces(offset, length) where piece.whole {
                    if !geometry.hasZeroFlag && backing != nil { continue }
                    let current = try lookupEntry(piece.offset)
                    let allocated = current.entry.isCompressed || current.entry.hostOffset != 0
                    if !allocated && backing == nil { continue }  // already reads as zero, nothing to free
                    if let u = try zeroEntryUpdate(at: piece.offset, unmap: true) {
                        // Only clusters whose mapping changes: a discard of what reads as
                        // zero already (or of partial clusters, left alone) changes nothing.
                        recordChange(offset: piece.offset, length: piece.length)
                        updates.append(u)
                    }
                }
                try apply(updates)
            }
        }
        if fua { try syncAndReleasePending() }
    }

    /// Zeroing by metadata alone: v3 has the zero flag; v2 can only drop the mapping, which is
    /// zero only when there is no backing file.
    var canZeroByMetadata: Bool { geometry.hasZeroFlag || backing == nil }

    struct ClusterPiece {
        var offset: UInt64
        var length: UInt64
        /// Covers the cluster entirely (or up to the end of the disk for the last cluster).
        var whole: Bool
    }

    func clusterPieces(_ offset: UInt64, _ length: UInt64) -> [ClusterPiece] {
        var pieces: [ClusterPiece] = []
        var cursor = offset
        let end = offset + length
        while cursor < end {
            let start = geometry.clusterStart(cursor)
            let clusterEnd = min(start + geometry.clusterSize, size)
            let n = min(clusterEnd, end) - cursor
            pieces.append(ClusterPiece(offset: cursor, length: n, whole: cursor == start && cursor + n == clusterEnd))
            cursor += n
        }
        return pieces
    }

    /// The current entry of the cluster at `guest` (unallocated when there is no L2 table).
    func lookupEntry(_ guest: UInt64) throws -> (table: UInt64, entry: L2Entry) {
        let l1 = try tables.l1Entry(geometry.l1Index(guest))
        let table = l1 & L2Entry.offsetMask
        guard table != 0 else { return (0, .unallocated) }
        return (table, try tables.entry(table: table, index: geometry.l2Index(guest)))
    }

    /// The entry change that makes the whole cluster at `guest` read as zero, or nil if it does already.
    private func zeroEntryUpdate(at guest: UInt64, unmap: Bool) throws -> L2Update? {
        let current = try lookupEntry(guest)
        let old = current.entry
        // Unallocated with nothing below reads as zero already: no entry to change, and above
        // all no L2 table to create (zeroing the holes of a sparse multi-TiB image would
        // otherwise write every table of it).
        if backing == nil && old == .unallocated { return nil }
        var new: L2Entry
        if geometry.extendedL2 {
            new = L2Entry(word: 0, bitmap: L2Entry.allSubclustersZero)
        } else if geometry.hasZeroFlag {
            let keep = !unmap && isWritableInPlace(old)  // ZERO_ALLOC: keep the preallocated cluster
            new = L2Entry(word: keep ? old.word | L2Entry.zeroFlag : L2Entry.zeroFlag)
        } else {
            new = .unallocated  // v2 without backing file
        }
        if new == old { return nil }
        if current.table == 0 && !geometry.hasZeroFlag { return nil }  // v2, no table: already zero
        let table = try writableL2Table(for: guest)
        return L2Update(table: table, index: geometry.l2Index(guest), entry: new)
    }
}
