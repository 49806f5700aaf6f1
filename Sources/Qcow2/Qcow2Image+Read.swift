import BlockDevices

extension Qcow2Image {
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try checkRange(offset, UInt64(buffer.count))
        try readGuest(into: buffer, at: offset)
    }

    /// Answers, without any data I/O, reads of ranges that read as zero by their mapping alone
    /// (zero clusters; unallocated clusters with no backing file): the server's reader thread
    /// then replies at once instead of waking a worker. Anything else returns false.
    public func readIfImmediate(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try checkRange(offset, UInt64(buffer.count))
        var cursor = offset
        let end = offset + UInt64(buffer.count)
        while cursor < end {
            let run = try lookup(cursor)
            switch run.mapping {
            case .zero: break
            case .unallocated where backing == nil: break
            default: return false
            }
            cursor += min(run.length, end - cursor)
        }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        return true
    }

    public func cache(offset: UInt64, length: UInt64) throws {
        try checkRange(offset, length)
    }

    /// Maps the guest byte at `guest` through L1/L2: the answer holds for `length` bytes.
    func lookup(_ guest: UInt64) throws -> MappedRun {
        let g = geometry
        let l1 = try tables.l1Entry(g.l1Index(guest))
        let tableOffset = l1 & L2Entry.offsetMask
        if tableOffset == 0 {
            // No L2 table: the whole range it would cover is unallocated.
            return MappedRun(mapping: .unallocated, length: g.bytesPerL2 - guest % g.bytesPerL2, hostAllocated: false)
        }
        let entry = try tables.entry(table: tableOffset, index: g.l2Index(guest))
        return try entry.run(at: g.offsetInCluster(guest), geometry: g)
    }

    /// Reads guest bytes (ChainLayer): the caller keeps the range inside `size`.
    func readGuest(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let guest = offset + UInt64(done)
            let run = try lookup(guest)
            let n = Int(min(run.length, UInt64(buffer.count - done)))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<done + n])
            switch run.mapping {
            case .data(let host):
                try file.readZeroFilled(into: slice, at: host)
            case .zero:
                slice.initializeMemory(as: UInt8.self, repeating: 0)
            case .unallocated:
                try readBacking(into: slice, at: guest)
            case .compressed(let descriptor):
                try readCompressed(descriptor, into: slice, inCluster: geometry.offsetInCluster(guest))
            }
            done += n
        }
    }

    /// Reads what the backing chain shows at `guest`; past the backing file's end: zeroes.
    func readBacking(into buffer: UnsafeMutableRawBufferPointer, at guest: UInt64) throws {
        guard let backing, guest < backing.size else {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            return
        }
        let inside = Int(min(UInt64(buffer.count), backing.size - guest))
        try backing.readGuest(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<inside]), at: guest)
        if inside < buffer.count {
            UnsafeMutableRawBufferPointer(rebasing: buffer[inside...]).initializeMemory(as: UInt8.self, repeating: 0)
        }
    }

    private func readCompressed(_ d: CompressedDescriptor, into slice: UnsafeMutableRawBufferPointer, inCluster: UInt64) throws {
        guard d.byteCount <= 2 * geometry.clusterSize + 512 else {
            throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: compressed cluster of \(d.byteCount) bytes")
        }
        var input = [UInt8](repeating: 0, count: Int(d.byteCount))
        try input.withUnsafeMutableBytes { try file.readZeroFilled(into: $0, at: d.offset) }
        var cluster = [UInt8](repeating: 0, count: Int(geometry.clusterSize))
        try input.withUnsafeBytes { inBuf in
            try cluster.withUnsafeMutableBytes { out in
                try ClusterDecompressor.decompress(inBuf, into: out, type: header.compressionType)
            }
        }
        cluster.withUnsafeBytes { src in
            slice.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(inCluster)..<Int(inCluster) + slice.count]))
        }
    }
}
