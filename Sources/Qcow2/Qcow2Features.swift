/// Feature bits of a v3 header (qcow2.txt "incompatible/compatible/autoclear features").
struct Qcow2IncompatibleFeatures: OptionSet, Sendable, Hashable {
    let rawValue: UInt64
    /// Refcounts may be stale (lazy refcounts in use, image not closed cleanly).
    static let dirty = Qcow2IncompatibleFeatures(rawValue: 1 << 0)
    /// Metadata is known to be inconsistent.
    static let corrupt = Qcow2IncompatibleFeatures(rawValue: 1 << 1)
    /// Guest data lives in a separate file.
    static let externalDataFile = Qcow2IncompatibleFeatures(rawValue: 1 << 2)
    /// `compression_type` is non-zero.
    static let compressionType = Qcow2IncompatibleFeatures(rawValue: 1 << 3)
    /// 128-bit L2 entries with 32 subclusters per cluster.
    static let extendedL2 = Qcow2IncompatibleFeatures(rawValue: 1 << 4)

    static let known: Qcow2IncompatibleFeatures = [.dirty, .corrupt, .externalDataFile, .compressionType, .extendedL2]
}

struct Qcow2CompatibleFeatures: OptionSet, Sendable, Hashable {
    let rawValue: UInt64
    static let lazyRefcounts = Qcow2CompatibleFeatures(rawValue: 1 << 0)
}

struct Qcow2AutoclearFeatures: OptionSet, Sendable, Hashable {
    let rawValue: UInt64
    static let bitmaps = Qcow2AutoclearFeatures(rawValue: 1 << 0)
    static let rawExternalData = Qcow2AutoclearFeatures(rawValue: 1 << 1)
}

/// How compressed clusters are encoded (header byte 104).
enum Qcow2CompressionType: UInt8, Sendable {
    case deflate = 0
    case zstd = 1
}
