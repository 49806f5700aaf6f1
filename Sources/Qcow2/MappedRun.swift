/// The answer of an L2 lookup for a stretch of guest bytes inside one cluster.
struct MappedRun: Sendable, Equatable {
    enum Mapping: Sendable, Equatable {
        /// Not allocated here: the backing file (or zeroes) shows through.
        case unallocated
        /// Reads as zeroes; the backing file is not consulted.
        case zero
        /// Data at this host offset (of the run's first byte).
        case data(host: UInt64)
        case compressed(CompressedDescriptor)
    }
    var mapping: Mapping
    var length: UInt64
    /// The entry owns a host cluster (QEMU reports an offset) even if it reads as zero/unallocated.
    var hostAllocated: Bool
}
