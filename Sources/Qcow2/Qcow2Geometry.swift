/// Constants derived from the header that every address computation needs.
struct Qcow2Geometry: Sendable, Equatable {
    let clusterBits: UInt64
    let extendedL2: Bool
    /// v3 images have the zero flag; v2 images do not.
    let hasZeroFlag: Bool
    let refcountOrder: UInt64

    init(clusterBits: UInt32, extendedL2: Bool, version: UInt32, refcountOrder: UInt32) {
        self.clusterBits = UInt64(clusterBits)
        self.extendedL2 = extendedL2
        self.hasZeroFlag = version >= 3
        self.refcountOrder = UInt64(refcountOrder)
    }

    var clusterSize: UInt64 { 1 << clusterBits }
    var l2EntryBytes: UInt64 { extendedL2 ? 16 : 8 }
    var l2Entries: UInt64 { clusterSize / l2EntryBytes }
    /// Guest bytes covered by one L2 table.
    var bytesPerL2: UInt64 { clusterSize * l2Entries }
    var subclusterSize: UInt64 { extendedL2 ? clusterSize / 32 : clusterSize }
    var refcountBits: UInt64 { 1 << refcountOrder }
    /// Counters in one refcount block.
    var refcountsPerBlock: UInt64 { clusterSize * 8 / refcountBits }
    var maxRefcount: UInt64 { refcountBits == 64 ? UInt64.max : (1 << refcountBits) - 1 }

    func l1Index(_ guest: UInt64) -> Int { Int(guest / bytesPerL2) }
    func l2Index(_ guest: UInt64) -> Int { Int((guest >> clusterBits) & (l2Entries - 1)) }
    func offsetInCluster(_ guest: UInt64) -> UInt64 { guest & (clusterSize - 1) }
    func clusterStart(_ guest: UInt64) -> UInt64 { guest & ~(clusterSize - 1) }
}
