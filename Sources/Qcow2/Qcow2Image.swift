import BlockDevices
import Foundation

/// A qcow2 image (v2 or v3) as a `BlockDevice`, with its backing chain.
///
/// Threading: reads take only the short lock of `MappingTables`; mutating requests first claim
/// their guest clusters in `inFlight` (so two requests never race for one L2 slot), and only
/// allocation, refcount changes and L1/L2-table creation take `allocationLock`. Lock order:
/// inFlight → allocationLock → tables.
///
/// Crash safety (docs/qcow2-driver.md, "ordering"): a refcount is raised (written) before
/// anything references the cluster; guest data, COW padding and new L2 tables are written, then
/// one sync, then the queued L1/L2 entries are written; a reference is removed first and the
/// refcount decremented only after a later sync has made that removal durable (`pendingFrees`).
/// So a crash leaves leaks at worst, and every write acknowledged before a FLUSH (or with FUA) is
/// readable afterwards. Refcounts are kept exact (no lazy refcounts, the dirty bit is never
/// set), so a clean close leaves no leaks.
///
/// Dirty images (lazy refcounts, not closed cleanly) open read-only as they are; opened for
/// writing, their refcounts are first rebuilt from the metadata and the dirty bit cleared
/// (`RefcountRebuilder`), as QEMU does. We never set the dirty bit ourselves.
public final class Qcow2Image: BlockDevice, ChainLayer, @unchecked Sendable {
    public let path: String
    public let size: UInt64
    let file: HostFile
    let header: Qcow2Header
    let geometry: Qcow2Geometry
    let tables: MappingTables
    let backing: ChainLayer?
    let writable: Bool

    let inFlight = InFlightClusters()
    let allocationLock = NSLock()
    /// Serialises `commitMappings` (lock order: commitLock → allocationLock → tables).
    let commitLock = NSLock()
    /// Created on first allocation (only for writable images); guarded by `allocationLock`.
    var refcountStore: RefcountStore?
    /// Host clusters to decrement once a sync has made the L2 change that dropped them durable.
    var pendingFrees: [UInt64] = []
    /// False once `FALLOC_FL_ZERO_RANGE` failed on this file; guarded by `allocationLock`.
    var zeroRangeWorks = true
    /// New or copied L2 tables written so far; guarded by `allocationLock` (for metrics).
    var l2TablesWritten: UInt64 = 0
    private let stateLock = NSLock()
    private var closed = false
    /// Persistent bitmaps: loaded at open when writable, on first use when read-only.
    /// Guarded by `bitmapLock` (the loaded object has its own lock).
    var bitmapState: BitmapState = .notLoaded
    let bitmapLock = NSLock()

    enum BitmapState {
        case notLoaded
        case none
        case loaded(Qcow2PersistentBitmaps)
        case failed(BlockDeviceError)
    }

    /// Longest backing chain we follow (QEMU has no fixed limit; a bound keeps loops and
    /// hostile images from exhausting file descriptors).
    public static let defaultMaxBackingDepth = 32

    /// Opens an image; `readOnly: false` opens it for writing (backing files are always read-only).
    public convenience init(path: String, readOnly: Bool = false, maxBackingDepth: Int = Qcow2Image.defaultMaxBackingDepth,
                            cache: Qcow2CacheOptions = .default) throws {
        try self.init(path: path, writable: !readOnly, depth: 0, maxDepth: maxBackingDepth, visited: [], cache: cache)
    }

    /// The metadata cache sizes this image was opened with.
    public let cacheOptions: Qcow2CacheOptions

    init(path: String, writable: Bool, depth: Int, maxDepth: Int, visited: Set<String>, cache: Qcow2CacheOptions) throws {
        self.path = path
        let file = try HostFile(path: path, writable: writable)
        try file.lock()
        let fileLength = try file.length()
        // Cluster 0 holds the header, extensions and backing name; 2 MiB is the largest cluster.
        let headBytes = try file.readExactly(Int(min(fileLength, 2 << 20)), at: 0, what: "header")
        let header = try Qcow2Header.parse(headBytes, fileLength: fileLength)
        let geometry = Qcow2Geometry(clusterBits: header.clusterBits, extendedL2: header.incompatible.contains(.extendedL2),
                                     version: header.version, refcountOrder: header.refcountOrder)
        if writable && header.hasBitmapsExtension {
            // Autoclear bit 0 clear: a writer without bitmap support changed the image after
            // the bitmaps were saved, so they are stale; QEMU discards them on its next
            // read-write open (leaking their clusters). We neither use nor silently drop them.
            if !header.autoclear.contains(.bitmaps) {
                throw BlockDeviceError(.unsupportedFeature, "qcow2: \(path) has persistent bitmaps marked stale (autoclear bit 0 is clear: a program without bitmap support wrote the image); open it read-only")
            }
            if header.incompatible.contains(.dirty) {
                throw BlockDeviceError(.unsupportedFeature, "qcow2: \(path) was not closed cleanly (dirty bit) and has persistent bitmaps, whose clusters the refcount repair here does not count; repair it with 'qemu-img check -r all'")
            }
        }
        self.file = file
        self.header = header
        self.geometry = geometry
        self.writable = writable
        self.size = header.size / 512 * 512  // QEMU counts whole sectors only
        self.cacheOptions = cache
        // Never reserve more than the image's L2 tables could fill.
        let tablesNeeded = (header.size / geometry.bytesPerL2) + 1
        let l2Bytes = min(cache.l2CacheBytes, tablesNeeded.multipliedReportingOverflow(by: geometry.clusterSize).partialValue)
        self.tables = try MappingTables(file: file, geometry: geometry, l1Offset: header.l1TableOffset, l1Size: Int(header.l1Size),
                                        cacheBytes: l2Bytes)
        var visited = visited
        visited.insert(BackingChain.canonicalPath(path))
        self.backing = try BackingChain.openBacking(of: header, imagePath: path, depth: depth + 1, maxDepth: maxDepth, visited: visited,
                                                    cache: cache)
        if writable {
            let store = try RefcountStore(file: file, geometry: geometry, tableOffset: header.refcountTableOffset,
                                          tableClusters: UInt64(header.refcountTableClusters), cacheBytes: cache.refcountCacheBytes)
            refcountStore = store
            if header.incompatible.contains(.dirty) {
                // Lazy refcounts left stale by a crash: rebuild them before the first allocation.
                var rebuilder = RefcountRebuilder(file: file, header: header, geometry: geometry, store: store)
                try rebuilder.repair()
            }
            if header.hasBitmapsExtension {
                // Loaded (and every problem refused) before anything is written.
                let bitmaps = try Qcow2PersistentBitmaps(file: file, header: header, virtualSize: size, writable: true)
                try bitmaps.checkOwnership(metadata: try metadataClusters(store: store), clusterBits: geometry.clusterBits,
                                           refcount: { try store.count($0) })
                bitmapState = .loaded(bitmaps)
            }
            let kept: Qcow2AutoclearFeatures = header.hasBitmapsExtension ? [.bitmaps] : []
            if header.autoclear != kept {
                // Autoclear bits we do not maintain must be cleared before our first write;
                // bit 0 stays set while we keep the bitmaps consistent.
                try file.write([UInt8].be64(kept.rawValue), at: 88)
                try file.sync()
            }
            // As QEMU does on a read-write open: in use (on disk) until written back at close.
            if case .loaded(let bitmaps) = bitmapState { try bitmaps.setInUse(true) }
        }
    }

    public var capabilities: BlockDeviceCapabilities {
        var caps: BlockDeviceCapabilities = [.extents, .allocationDepth, .cache]
        if writable {
            caps.formUnion([.flush, .fua, .trim, .writeZeroes, .fastZero, .multiConn])
        } else {
            caps.formUnion([.readOnly, .multiConn])
        }
        return caps
    }

    public var blockSizes: BlockSizeConstraints {
        BlockSizeConstraints(minimum: 1, preferred: UInt32(max(4096, min(geometry.clusterSize, 2 << 20))), maximumPayload: 32 << 20)
    }

    public var clusterSize: UInt64 { geometry.clusterSize }
    public var backingFileName: String? { header.backingFileName }

    func checkOpen() throws {
        if stateLock.withLock({ closed }) { throw BlockDeviceError(.shutdown, "qcow2: \(path) is closed") }
    }

    func checkRange(_ offset: UInt64, _ length: UInt64) throws {
        try checkOpen()
        guard offset <= size, length <= size - offset else {
            throw BlockDeviceError(.outOfRange, "qcow2: range \(offset)+\(length) beyond the virtual size \(size)")
        }
    }

    func checkWritable() throws {
        guard writable else { throw BlockDeviceError(.readOnly, "qcow2: \(path) is open read-only") }
    }

    public func close() throws {
        let wasClosed = stateLock.withLock { () -> Bool in defer { closed = true }; return closed }
        if wasClosed { return }
        defer { releaseLocks() }
        if !writable { return }
        // Apply the deferred refcount decrements (after a sync), then make them durable too,
        // so a clean close leaves exact refcounts.
        try writeBackBitmaps()
        try syncAndReleasePending()
        try file.sync()
        // Everything the bitmaps describe is durable: now they may say they are consistent.
        if let bitmaps = loadedBitmaps { try bitmaps.setInUse(false) }
    }

    /// Drops the file locks of this image and its backing chain (the descriptors stay open
    /// until the image is released).
    func releaseLocks() {
        file.unlock()
        backing?.releaseLocks()
    }

    deinit { try? close() }
}

extension Qcow2Image {
    /// Whether a file starts with the qcow2 magic. Only for formats the user asked to probe:
    /// a guest can write this magic into a raw image.
    public static func hasQcow2Magic(path: String) -> Bool {
        guard let file = try? HostFile(path: path, writable: false), (try? file.length()) ?? 0 >= 4,
              let magic = try? file.readExactly(4, at: 0, what: "magic") else { return false }
        return magic.be32(at: 0) == Qcow2Header.magic
    }
}
