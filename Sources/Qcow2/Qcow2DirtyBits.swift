/// The bits of one dirty bitmap in memory, in chunks of one bitmap data cluster each.
///
/// Why chunks: the on-disk form is a table of data clusters where an all-zero cluster costs
/// nothing, and a dirty bitmap of a multi-TiB disk is mostly clean. A chunk that was never set
/// holds no memory (nil), so a 4 TiB disk at 64 KiB granularity costs its table (one optional
/// per 512 Ki granules, 128 chunks with 64 KiB clusters) plus 64 KiB per chunk that has a set
/// bit — at most 8 MiB, as QEMU's own bitmap would. Chunks changed since the last write-back
/// are remembered so a flush writes only those.
///
/// Bit `i` covers guest bytes `[i * granularity, (i + 1) * granularity)`; in the data it is bit
/// `i % 8` (least significant first) of byte `i / 8`, so a little-endian 64-bit word holds
/// bits `64w ..< 64w + 64`. Not thread-safe: the owner locks.
struct Qcow2DirtyBits {
    let granularityBits: UInt64
    /// Bits in the bitmap (granules of the virtual disk, the last one possibly partial).
    let bitCount: UInt64
    let wordsPerChunk: Int
    private(set) var chunks: [[UInt64]?]
    /// Chunks changed since `takeChanged` last ran.
    private(set) var changed: Set<Int> = []

    init(virtualSize: UInt64, granularityBits: UInt8, clusterSize: UInt64) {
        self.granularityBits = UInt64(granularityBits)
        let granularity = UInt64(1) << UInt64(granularityBits)
        bitCount = virtualSize / granularity + (virtualSize % granularity == 0 ? 0 : 1)
        wordsPerChunk = Int(clusterSize / 8)
        let chunkCount = Qcow2BitmapDirectory.tableEntriesNeeded(virtualSize: virtualSize, granularityBits: granularityBits,
                                                                  clusterSize: clusterSize)
        chunks = Array(repeating: nil, count: Int(chunkCount))
    }

    var bitsPerChunk: UInt64 { UInt64(wordsPerChunk) * 64 }
    var granularity: UInt64 { 1 << granularityBits }

    /// Loads one chunk from its data cluster (little-endian bit order); tail bits past the
    /// disk are cleared, as the format requires them to be zero.
    mutating func load(chunk index: Int, bytes: [UInt8]) {
        guard index >= 0, index < chunks.count, bytes.count == wordsPerChunk * 8 else { return }
        var words = [UInt64](repeating: 0, count: wordsPerChunk)
        var any = false
        for w in 0..<wordsPerChunk {
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[w * 8 + k]) << (8 * UInt64(k)) }
            words[w] = v
            any = any || v != 0
        }
        if any { chunks[index] = words }
        clearTail(chunk: index)
    }

    /// Marks a whole chunk set (a table entry of "all ones").
    mutating func loadAllOnes(chunk index: Int) {
        guard index >= 0, index < chunks.count else { return }
        chunks[index] = [UInt64](repeating: .max, count: wordsPerChunk)
        clearTail(chunk: index)
    }

    private mutating func clearTail(chunk index: Int) {
        let first = UInt64(index) * bitsPerChunk
        guard first + bitsPerChunk > bitCount, var words = chunks[index] else { return }
        chunks[index] = nil  // so `words` is the only reference and changes in place
        var bit = max(bitCount, first)
        while bit < first + bitsPerChunk {
            let local = bit - first
            words[Int(local / 64)] &= ~(UInt64(1) << (local % 64))
            bit += 1
        }
        chunks[index] = words.allSatisfy({ $0 == 0 }) ? nil : words
    }

    /// Sets the bits of every granule that `[offset, offset + length)` touches.
    mutating func set(offset: UInt64, length: UInt64) {
        guard length > 0, bitCount > 0 else { return }
        let first = offset >> granularityBits
        guard first < bitCount else { return }
        let last = min((offset + (length - 1)) >> granularityBits, bitCount - 1)
        var bit = first
        while bit <= last {
            let chunk = Int(bit / bitsPerChunk)
            let chunkEnd = min(UInt64(chunk + 1) * bitsPerChunk - 1, last)
            var words = chunks[chunk] ?? [UInt64](repeating: 0, count: wordsPerChunk)
            chunks[chunk] = nil  // so `words` is the only reference and changes in place
            let base = UInt64(chunk) * bitsPerChunk
            var local = bit - base
            let localEnd = chunkEnd - base
            while local <= localEnd {
                let w = Int(local / 64)
                let lo = local % 64
                let hi = min(63, localEnd - UInt64(w) * 64)
                let span = hi - lo + 1
                words[w] |= span == 64 ? UInt64.max : ((UInt64(1) << span) - 1) << lo
                local = UInt64(w + 1) * 64
            }
            chunks[chunk] = words
            changed.insert(chunk)
            bit = chunkEnd + 1
        }
    }

    func isSet(_ bit: UInt64) -> Bool {
        guard bit < bitCount, let words = chunks[Int(bit / bitsPerChunk)] else { return false }
        let local = bit % bitsPerChunk
        return words[Int(local / 64)] & (1 << (local % 64)) != 0
    }

    /// The first bit at or after `from` (below `limit`) whose value is `value`, or `limit`.
    func next(_ value: Bool, from: UInt64, limit: UInt64) -> UInt64 {
        var bit = from
        while bit < limit {
            let chunk = Int(bit / bitsPerChunk)
            let chunkStart = UInt64(chunk) * bitsPerChunk
            guard let words = chunks[chunk] else {
                if !value { return bit }
                bit = chunkStart + bitsPerChunk
                continue
            }
            var w = Int((bit - chunkStart) / 64)
            var skip = (bit - chunkStart) % 64
            while w < wordsPerChunk {
                var word = value ? words[w] : ~words[w]
                word &= UInt64.max << skip
                if word != 0 {
                    return min(limit, chunkStart + UInt64(w) * 64 + UInt64(word.trailingZeroBitCount))
                }
                w += 1
                skip = 0
            }
            bit = chunkStart + bitsPerChunk
        }
        return limit
    }

    /// Alternating runs of clean and dirty guest bytes covering `[offset, offset + length)`
    /// (clipped to the disk), at most `maxRuns` of them (the last one then ends early).
    func runs(offset: UInt64, length: UInt64, maxRuns: Int) -> [Qcow2DirtyRun] {
        var result: [Qcow2DirtyRun] = []
        let end = offset + length
        var position = offset
        guard length > 0, bitCount > 0 else { return [] }
        let limitBit = bitCount
        while position < end && result.count < maxRuns {
            let bit = position >> granularityBits
            guard bit < limitBit else { break }
            let dirty = isSet(bit)
            let boundary = next(!dirty, from: bit + 1, limit: limitBit)
            let runEnd = boundary >= limitBit ? end : min(end, boundary << granularityBits)
            result.append(Qcow2DirtyRun(length: runEnd - position, dirty: dirty))
            position = runEnd
        }
        return result
    }

    /// The chunk's bytes as they go to disk.
    func bytes(chunk index: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: wordsPerChunk * 8)
        guard index >= 0, index < chunks.count, let words = chunks[index] else { return bytes }
        for (w, v) in words.enumerated() where v != 0 {
            for k in 0..<8 { bytes[w * 8 + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        }
        return bytes
    }

    /// The chunks changed since the last call, in order; they count as unchanged afterwards.
    mutating func takeChanged() -> [Int] {
        defer { changed = [] }
        return changed.sorted()
    }

    /// Puts chunks back on the changed list (their write-back failed).
    mutating func requeue(_ indices: [Int]) { changed.formUnion(indices) }

    /// Bytes of bit data held in memory (for tests proving the footprint).
    var memoryBytes: Int { chunks.reduce(0) { $0 + ($1?.count ?? 0) * 8 } + chunks.count * MemoryLayout<[UInt64]?>.stride }
}

/// A run of guest bytes that are all dirty or all clean in a bitmap.
public struct Qcow2DirtyRun: Equatable, Sendable {
    public var length: UInt64
    public var dirty: Bool
    public init(length: UInt64, dirty: Bool) {
        self.length = length
        self.dirty = dirty
    }
}
