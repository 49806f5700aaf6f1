import BlockDevices
import Foundation

/// What a persistent bitmap of an image is, for `serve --bitmap` and tests.
public struct Qcow2BitmapInfo: Sendable, Equatable {
    public var name: String
    public var granularity: UInt64
    /// The `auto` flag: the bitmap records every change of the disk.
    public var enabled: Bool
    /// The `in_use` flag was set when the image was opened: the bitmap was not saved
    /// correctly (a crash, or a writer without bitmap support) and QEMU treats it as
    /// inconsistent. It is left exactly as it is.
    public var inconsistent: Bool
    /// Why this driver cannot use the bitmap (unknown type or flags, bad table), or nil.
    public var problem: String?
}

/// The persistent dirty bitmaps of one qcow2 image (qcow2.txt "Bitmaps"), kept consistent.
///
/// Mirrors what QEMU does with an image it opens read-write: every bitmap that was saved
/// correctly is loaded into memory and marked `in_use` on disk before the first write, so a
/// crash leaves it `in_use` (inconsistent, as QEMU would leave it); enabled (`auto`) bitmaps
/// record every change of content; a clean close writes the bits back and clears `in_use`.
/// A flush also writes the bits back (the image structure is then complete and exact on disk),
/// but `in_use` stays set while the image is open, since the next write changes the bitmap
/// again — exactly QEMU's crash semantics, and no extra sync per write.
///
/// The directory and tables never move: the table of every bitmap has one entry per data
/// cluster the disk needs, and write-back fills it in place — overwriting the bitmap's own data
/// clusters, or allocating a data cluster for a chunk that was all zeroes (refcount raised and
/// data written, synced, then the table entry written: a crash leaves a leak at worst).
/// Bitmaps already `in_use` at open, and disabled ones, are never written. Bits are only ever
/// set, never cleared, so chunks only go from zero to data.
///
/// Thread-safe: one lock, taken before the image's allocation lock.
final class Qcow2PersistentBitmaps: @unchecked Sendable {
    private struct Tracked {
        var entry: Qcow2BitmapEntry
        var bits: Qcow2DirtyBits
        /// The first `bits.chunks.count` entries of the bitmap table, as on disk.
        var table: [UInt64]
    }

    private let file: HostFile
    private let clusterSize: UInt64
    private let directoryOffset: UInt64
    private var directoryBytes: [UInt8]
    private var entries: [Qcow2BitmapEntry]
    /// Consistent, usable bitmaps, loaded into memory.
    private var tracked: [Tracked]
    let infos: [Qcow2BitmapInfo]
    private let lock = NSLock()
    /// Whether this image may be written (bits recorded, write-back, `in_use` flags).
    private let writable: Bool

    /// Data chunks written back so far (tests and metrics).
    private(set) var chunksWritten: UInt64 = 0

    static func bad(_ why: String) -> BlockDeviceError { BlockDeviceError(.badFormat, "qcow2: bitmaps: \(why)") }

    /// Reads the directory and loads every consistent bitmap. For a writable image every
    /// problem is an error (the image must not be written with bitmaps we cannot keep up to
    /// date); read-only, a problem only makes that bitmap unusable.
    init(file: HostFile, header: Qcow2Header, virtualSize: UInt64, writable: Bool) throws {
        self.file = file
        self.writable = writable
        clusterSize = header.clusterSize
        let fileLength = try file.length()
        guard let ext = header.bitmapsExtension else { throw Self.bad("the bitmaps header extension is not 24 bytes long") }
        guard ext.reserved == 0 else { throw Self.bad("the reserved field of the bitmaps extension is not zero") }
        guard (1...Qcow2BitmapsExtension.maxBitmaps).contains(ext.bitmapCount) else {
            throw Self.bad("\(ext.bitmapCount) bitmaps (1...65535 allowed)")
        }
        guard ext.directorySize > 0, ext.directorySize <= Qcow2BitmapsExtension.maxDirectorySize else {
            throw Self.bad("bitmap directory of \(ext.directorySize) bytes")
        }
        guard ext.directoryOffset != 0, ext.directoryOffset % clusterSize == 0 else {
            throw Self.bad("bitmap directory offset is not cluster aligned")
        }
        guard ext.directoryOffset <= fileLength, ext.directorySize <= fileLength - ext.directoryOffset else {
            throw Self.bad("bitmap directory lies past the end of the file")
        }
        directoryOffset = ext.directoryOffset
        directoryBytes = try file.readExactly(Int(ext.directorySize), at: ext.directoryOffset, what: "bitmap directory")
        entries = try Qcow2BitmapDirectory.parse(directoryBytes, count: ext.bitmapCount)

        var infos: [Qcow2BitmapInfo] = []
        var tracked: [Tracked] = []
        for entry in entries {
            var problem = Qcow2BitmapDirectory.problem(with: entry, clusterSize: clusterSize, virtualSize: virtualSize,
                                                       fileLength: fileLength)
            if problem == nil && !entry.inUse {
                do {
                    tracked.append(try Self.load(entry, file: file, clusterSize: clusterSize, virtualSize: virtualSize,
                                                 fileLength: fileLength))
                } catch let error as BlockDeviceError where error.code == .badFormat {
                    problem = error.message
                }
            }
            if let problem, writable {
                throw BlockDeviceError(.unsupportedFeature,
                                       "qcow2: persistent bitmap '\(entry.name)' \(problem); the image can only be opened read-only")
            }
            infos.append(Qcow2BitmapInfo(name: entry.name, granularity: entry.granularity, enabled: entry.isAuto,
                                         inconsistent: entry.inUse, problem: problem))
        }
        self.infos = infos
        self.tracked = tracked
    }

    private static func load(_ entry: Qcow2BitmapEntry, file: HostFile, clusterSize: UInt64, virtualSize: UInt64,
                             fileLength: UInt64) throws -> Tracked {
        var bits = Qcow2DirtyBits(virtualSize: virtualSize, granularityBits: entry.granularityBits, clusterSize: clusterSize)
        let tableBytes = try file.readExactly(Int(entry.tableSize) * 8, at: entry.tableOffset, what: "bitmap table")
        var table: [UInt64] = []
        table.reserveCapacity(bits.chunks.count)
        for index in 0..<Int(entry.tableSize) {
            let word = tableBytes.be64(at: index * 8)
            guard let meaning = Qcow2BitmapTableEntry.decode(word, clusterSize: clusterSize, fileLength: fileLength) else {
                throw bad("bitmap '\(entry.name)' has an invalid table entry \(index) (0x\(String(word, radix: 16)))")
            }
            guard index < bits.chunks.count else {
                // Entries past what the disk needs describe nothing; QEMU writes none.
                guard meaning == .zeroes else { throw bad("bitmap '\(entry.name)' has data past the end of the disk") }
                continue
            }
            table.append(word)
            switch meaning {
            case .zeroes: break
            case .ones: bits.loadAllOnes(chunk: index)
            case .data(let offset):
                bits.load(chunk: index, bytes: try file.readExactly(Int(clusterSize), at: offset, what: "bitmap data"))
            }
        }
        return Tracked(entry: entry, bits: bits, table: table)
    }

    /// Before anything is written back in place: every cluster the kept bitmaps own (directory,
    /// tables, data) must be counted exactly once, owned once, and be none of the image's other
    /// metadata (`metadata`: host cluster indices of the header, L1, L2 and refcount
    /// structures). A corrupt pointer would otherwise make a write-back overwrite that
    /// structure. Guest data clusters are not listed (that would need a walk of every L2
    /// table); a bitmap pointing into one has refcount 2 for `qemu-img check`, or shares a
    /// count with it, which `refcount` cannot see — the same trust QEMU places in the image.
    func checkOwnership(metadata: Set<UInt64>, clusterBits: UInt64, refcount: (UInt64) throws -> UInt64) throws {
        func refuse(_ name: String, _ cluster: UInt64, _ why: String) -> BlockDeviceError {
            BlockDeviceError(.unsupportedFeature, "qcow2: persistent bitmap '\(name)' references host cluster \(cluster), which \(why); check the image with 'qemu-img check'")
        }
        var owned = Set<UInt64>()
        let directoryFirst = directoryOffset >> clusterBits
        let directoryLast = (directoryOffset + UInt64(directoryBytes.count) - 1) >> clusterBits
        var claims: [(name: String, cluster: UInt64)] = (directoryFirst...directoryLast).map { ("(directory)", $0) }
        try lock.withLock {
            for bitmap in tracked {
                let tableBytes = UInt64(bitmap.entry.tableSize) * 8
                if tableBytes > 0 {
                    let first = bitmap.entry.tableOffset >> clusterBits, last = (bitmap.entry.tableOffset + tableBytes - 1) >> clusterBits
                    claims += (first...last).map { (bitmap.entry.name, $0) }
                }
                for word in bitmap.table {
                    if case .data(let offset) = Qcow2BitmapTableEntry.decode(word, clusterSize: clusterSize, fileLength: .max) {
                        claims.append((bitmap.entry.name, offset >> clusterBits))
                    }
                }
            }
            for (name, cluster) in claims {
                if cluster == 0 || metadata.contains(cluster) { throw refuse(name, cluster, "holds other qcow2 metadata") }
                guard owned.insert(cluster).inserted else { throw refuse(name, cluster, "is referenced twice") }
                let count = try refcount(cluster)
                guard count == 1 else { throw refuse(name, cluster, "has refcount \(count) (1 expected)") }
            }
        }
    }

    // MARK: recording

    /// Whether any bitmap records changes (then every change must be reported here).
    var recordsChanges: Bool { lock.withLock { tracked.contains { $0.entry.isAuto } } }

    /// Sets the bits covering `[offset, offset + length)` in every enabled bitmap.
    func recordChange(offset: UInt64, length: UInt64) {
        guard writable, length > 0 else { return }
        lock.withLock {
            for index in tracked.indices where tracked[index].entry.isAuto {
                tracked[index].bits.set(offset: offset, length: length)
            }
        }
    }

    // MARK: export

    /// Clean and dirty runs of a usable bitmap over `[offset, offset + length)`.
    func runs(of name: String, offset: UInt64, length: UInt64, maxRuns: Int) throws -> [Qcow2DirtyRun] {
        try lock.withLock {
            guard let bitmap = tracked.first(where: { $0.entry.name == name }) else {
                throw BlockDeviceError(.notFound, "qcow2: no usable bitmap '\(name)'")
            }
            return bitmap.bits.runs(offset: offset, length: length, maxRuns: maxRuns)
        }
    }

    /// Memory the bits of a bitmap take (for tests proving the footprint at scale).
    func memoryBytes(of name: String) -> Int? {
        lock.withLock { tracked.first { $0.entry.name == name }?.bits.memoryBytes }
    }

    // MARK: on-disk state

    /// Sets or clears `in_use` on every bitmap this driver keeps, in place, then syncs.
    /// Bitmaps that were in use at open stay in use either way.
    func setInUse(_ inUse: Bool) throws {
        guard writable else { return }
        try lock.withLock {
            guard !tracked.isEmpty else { return }
            let names = Set(tracked.map(\.entry.name))
            var changed: [Qcow2BitmapEntry] = []
            for index in entries.indices where names.contains(entries[index].name) {
                if inUse { entries[index].flags |= Qcow2BitmapEntry.Flag.inUse } else { entries[index].flags &= ~Qcow2BitmapEntry.Flag.inUse }
                changed.append(entries[index])
            }
            let bytes = Qcow2BitmapDirectory.withFlags(directoryBytes, entries: changed)
            try file.write(bytes, at: directoryOffset)
            directoryBytes = bytes
            try file.sync()
        }
    }

    /// Writes the chunks changed since the last write-back. New data clusters come from
    /// `allocate` (refcount raised); they are written and synced before a table entry points
    /// at them. The caller syncs afterwards to make the table entries and overwrites durable.
    func writeBack(allocate: () throws -> UInt64) throws {
        guard writable else { return }
        try lock.withLock {
            var fresh: [(bitmap: Int, chunk: Int, host: UInt64)] = []
            var taken: [(bitmap: Int, chunks: [Int])] = []
            do {
                for index in tracked.indices {
                    let chunks = tracked[index].bits.takeChanged()
                    if chunks.isEmpty { continue }
                    taken.append((index, chunks))
                    for chunk in chunks {
                        let bytes = tracked[index].bits.bytes(chunk: chunk)
                        let word = tracked[index].table[chunk]
                        let host: UInt64
                        if case .data(let offset) = Qcow2BitmapTableEntry.decode(word, clusterSize: clusterSize, fileLength: .max) {
                            host = offset
                        } else {
                            host = try allocate()
                            fresh.append((index, chunk, host))
                        }
                        try file.write(bytes, at: host)
                        chunksWritten &+= 1
                    }
                }
                if !fresh.isEmpty {
                    try file.sync()
                    for (bitmap, chunk, host) in fresh {
                        try file.write([UInt8].be64(host), at: tracked[bitmap].entry.tableOffset + UInt64(chunk) * 8)
                        tracked[bitmap].table[chunk] = host
                    }
                }
            } catch {
                // Written again by the next write-back; clusters allocated meanwhile leak at worst.
                for (bitmap, chunks) in taken { tracked[bitmap].bits.requeue(chunks) }
                throw error
            }
        }
    }
}
