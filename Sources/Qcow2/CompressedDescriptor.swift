import BlockDevices

/// Where a compressed cluster's stream lives: a byte offset and a sector-granular length.
struct CompressedDescriptor: Sendable, Equatable {
    var offset: UInt64
    /// Bytes to read from `offset` (the stream may end earlier; trailing bytes are ignored).
    var byteCount: UInt64

    init(offset: UInt64, byteCount: UInt64) { self.offset = offset; self.byteCount = byteCount }

    init(word: UInt64, geometry g: Qcow2Geometry) throws {
        let x = 62 - (g.clusterBits - 8)
        let offset = word & ((1 << x) - 1)
        guard offset < (1 << 56) else { throw BlockDeviceError(.badFormat, "qcow2: corrupt metadata: compressed offset out of range") }
        let extraSectors = (word >> x) & ((1 << (g.clusterBits - 8)) - 1)
        self.offset = offset
        self.byteCount = (extraSectors + 1) * 512 - (offset & 511)
    }

    /// Host clusters the stream's sectors touch: each gets +1 refcount per compressed cluster.
    func hostClusters(geometry g: Qcow2Geometry) -> ClosedRange<UInt64> {
        let start = offset & ~511
        let end = start + ((offset & 511) + byteCount) - 1
        return (start >> g.clusterBits)...(end >> g.clusterBits)
    }
}
