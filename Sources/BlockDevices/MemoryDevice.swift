/// A sparse in-memory device: storage is allocated in fixed chunks on first write, so a
/// large, mostly empty device costs little. Thread-safe (one mutex; chunks are small).
/// Unallocated chunks read as zeroes and are reported as holes.
public final class MemoryDevice: BlockDevice, @unchecked Sendable {
    public let size: UInt64
    public let capabilities: BlockDeviceCapabilities
    public let blockSizes: BlockSizeConstraints
    public let chunkSize: Int

    private var chunks: [UInt64: [UInt8]] = [:]
    private var closed = false
    private let mutex = DeviceMutex()

    public init(size: UInt64, chunkSize: Int = 64 << 10, readOnly: Bool = false,
                blockSizes: BlockSizeConstraints = .default) {
        precondition(chunkSize > 0, "chunk size must be positive")
        self.size = size
        self.chunkSize = chunkSize
        self.blockSizes = blockSizes
        var caps: BlockDeviceCapabilities = [.flush, .fua, .cache, .extents, .multiConn]
        if readOnly { caps.insert(.readOnly) } else { caps.formUnion([.trim, .writeZeroes, .fastZero]) }
        capabilities = caps
    }

    /// Bytes of storage currently allocated (for tests and diagnostics).
    public var allocatedBytes: Int { mutex.withLock { chunks.count * chunkSize } }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try BlockDeviceError.checkRange(offset: offset, length: UInt64(buffer.count), size: size)
        try mutex.withLock {
            try checkOpen()
            forEachPiece(offset: offset, length: UInt64(buffer.count)) { index, inChunk, done, count in
                let target = buffer.baseAddress! + done
                if let chunk = chunks[index] {
                    chunk.withUnsafeBytes { target.copyMemory(from: $0.baseAddress! + inChunk, byteCount: count) }
                } else {
                    target.initializeMemory(as: UInt8.self, repeating: 0, count: count)
                }
            }
        }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        try requireWritable()
        try BlockDeviceError.checkRange(offset: offset, length: UInt64(data.count), size: size)
        try mutex.withLock {
            try checkOpen()
            forEachPiece(offset: offset, length: UInt64(data.count)) { index, inChunk, done, count in
                var chunk = chunks.removeValue(forKey: index) ?? [UInt8](repeating: 0, count: chunkSize)
                chunk.withUnsafeMutableBytes { ($0.baseAddress! + inChunk).copyMemory(from: data.baseAddress! + done, byteCount: count) }
                chunks[index] = chunk
            }
        }
    }

    /// Memory never waits for storage.
    public func readIfImmediate(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try read(into: buffer, at: offset)
        return true
    }

    public func writeIfImmediate(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool {
        try write(data, at: offset, fua: false)
        return true
    }

    public func flush() throws {
        try mutex.withLock { try checkOpen() }
    }

    public func trim(offset: UInt64, length: UInt64, fua: Bool) throws {
        try writeZeroes(offset: offset, length: length, mayTrim: true, fastOnly: false, fua: fua)
    }

    public func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {
        try requireWritable()
        try BlockDeviceError.checkRange(offset: offset, length: length, size: size)
        try mutex.withLock {
            try checkOpen()
            forEachPiece(offset: offset, length: length) { index, inChunk, _, count in
                if mayTrim && inChunk == 0 && count == chunkSize {
                    chunks[index] = nil
                } else if var chunk = chunks.removeValue(forKey: index) {
                    _ = chunk.withUnsafeMutableBytes { ($0.baseAddress! + inChunk).initializeMemory(as: UInt8.self, repeating: 0, count: count) }
                    chunks[index] = chunk
                } else if !mayTrim {
                    // NO_HOLE: the range must end up allocated.
                    chunks[index] = [UInt8](repeating: 0, count: chunkSize)
                }
            }
        }
    }

    public func extents(offset: UInt64, length: UInt64) throws -> [Extent] {
        try BlockDeviceError.checkRange(offset: offset, length: length, size: size)
        return try mutex.withLock {
            try checkOpen()
            var result: [Extent] = []
            forEachPiece(offset: offset, length: length) { index, _, _, count in
                let flags: ExtentFlags = chunks[index] == nil ? [.hole, .zero] : []
                if let last = result.last, last.flags == flags {
                    result[result.count - 1].length += UInt64(count)
                } else {
                    result.append(Extent(length: UInt64(count), flags: flags))
                }
            }
            return result
        }
    }

    public func close() throws {
        mutex.withLock {
            closed = true
            chunks = [:]
        }
    }

    private func checkOpen() throws {
        if closed { throw BlockDeviceError(.shutdown, "memory device is closed") }
    }

    private func requireWritable() throws {
        if capabilities.contains(.readOnly) { throw BlockDeviceError(.readOnly, "memory device is read-only") }
    }

    /// Splits a range into per-chunk pieces: (chunk index, offset in chunk, bytes done before, count).
    private func forEachPiece(offset: UInt64, length: UInt64, _ body: (UInt64, Int, Int, Int) -> Void) {
        var position = offset
        let end = offset + length
        let chunk = UInt64(chunkSize)
        while position < end {
            let index = position / chunk
            let inChunk = Int(position % chunk)
            let count = Int(min(chunk - UInt64(inChunk), end - position))
            body(index, inChunk, Int(position - offset), count)
            position += UInt64(count)
        }
    }
}
