import BlockDevices

/// One L2 table entry: the 64-bit descriptor and, with extended L2, the subcluster bitmap
/// (bits 0-31 "allocated", bits 32-63 "reads as zero").
struct L2Entry: Sendable, Equatable {
    static let copiedFlag: UInt64 = 1 << 63
    static let compressedFlag: UInt64 = 1 << 62
    static let zeroFlag: UInt64 = 1
    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    static let reservedMask: UInt64 = 0x3F00_0000_0000_01FE
    static let allSubclustersAllocated: UInt64 = 0xFFFF_FFFF
    static let allSubclustersZero: UInt64 = 0xFFFF_FFFF_0000_0000

    var word: UInt64
    var bitmap: UInt64 = 0

    static let unallocated = L2Entry(word: 0)

    var isCompressed: Bool { word & Self.compressedFlag != 0 }
    var isCopied: Bool { word & Self.copiedFlag != 0 }
    /// Host cluster offset of a standard (not compressed) entry; 0 when none.
    var hostOffset: UInt64 { isCompressed ? 0 : word & Self.offsetMask }

    /// What a read of the guest byte at `inCluster` (offset inside the cluster) finds, and for how
    /// many bytes from there (up to the end of the cluster) the answer stays the same.
    func run(at inCluster: UInt64, geometry g: Qcow2Geometry) throws -> MappedRun {
        if isCompressed {
            guard bitmap == 0 else { throw corrupt("compressed cluster with a subcluster bitmap") }
            return MappedRun(mapping: .compressed(try CompressedDescriptor(word: word, geometry: g)),
                             length: g.clusterSize - inCluster, hostAllocated: false)
        }
        guard word & Self.reservedMask == 0 else { throw corrupt("L2 entry 0x\(String(word, radix: 16)) has reserved bits set") }
        let host = hostOffset
        if !g.extendedL2 {
            let rest = g.clusterSize - inCluster
            if word & Self.zeroFlag != 0 {
                guard g.hasZeroFlag else { throw corrupt("zero cluster entry in a version 2 image") }
                return MappedRun(mapping: .zero, length: rest, hostAllocated: host != 0)
            }
            if host == 0 {
                guard !isCopied else { throw corrupt("L2 entry maps guest data to host offset 0") }
                return MappedRun(mapping: .unallocated, length: rest, hostAllocated: false)
            }
            return MappedRun(mapping: .data(host: host + inCluster), length: rest, hostAllocated: true)
        }
        // Extended L2: the state of each subcluster comes from the bitmap.
        guard word & Self.zeroFlag == 0 else { throw corrupt("zero flag set in an extended L2 entry") }
        let allocated = UInt32(truncatingIfNeeded: bitmap), zero = UInt32(truncatingIfNeeded: bitmap >> 32)
        guard allocated & zero == 0 else { throw corrupt("subcluster both allocated and zero") }
        guard host != 0 || allocated == 0 else { throw corrupt("allocated subclusters without a host cluster") }
        let sub = Int(inCluster / g.subclusterSize)
        func state(_ i: Int) -> Int { allocated & (1 << UInt32(i)) != 0 ? 1 : (zero & (1 << UInt32(i)) != 0 ? 2 : 0) }
        let first = state(sub)
        var end = sub + 1
        while end < 32 && state(end) == first { end += 1 }
        let length = UInt64(end) * g.subclusterSize - inCluster
        switch first {
        case 1: return MappedRun(mapping: .data(host: host + inCluster), length: length, hostAllocated: true)
        case 2: return MappedRun(mapping: .zero, length: length, hostAllocated: host != 0)
        default: return MappedRun(mapping: .unallocated, length: length, hostAllocated: host != 0)
        }
    }

    private func corrupt(_ why: String) -> BlockDeviceError { BlockDeviceError(.badFormat, "qcow2: corrupt metadata: \(why)") }
}
