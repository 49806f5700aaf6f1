import BlockDevices

/// The bitmaps header extension (type 0x23852875): where the bitmap directory is.
///
/// Layout (24 bytes, big-endian): nb_bitmaps u32, reserved u32 (zero), directory_size u64,
/// directory_offset u64 (cluster aligned).
struct Qcow2BitmapsExtension: Sendable, Equatable {
    var bitmapCount: UInt32
    var reserved: UInt32
    var directorySize: UInt64
    var directoryOffset: UInt64

    static let length = 24
    /// QEMU's limits: 65535 bitmaps, and a directory of at most 1 KiB per bitmap.
    static let maxBitmaps: UInt32 = 65535
    static let maxDirectorySize: UInt64 = 1024 * 65536

    /// Nil when the extension is not 24 bytes long (the loader then refuses the bitmaps).
    init?(_ data: [UInt8]) {
        guard data.count == Self.length else { return nil }
        bitmapCount = data.be32(at: 0)
        reserved = data.be32(at: 4)
        directorySize = data.be64(at: 8)
        directoryOffset = data.be64(at: 16)
    }
}

/// One bitmap directory entry (qcow2.txt "Bitmap directory").
///
/// ```
///  0 bitmap_table_offset u64   8 bitmap_table_size u32   12 flags u32
/// 16 type u8   17 granularity_bits u8   18 name_size u16   20 extra_data_size u32
/// 24 extra data, then the name (no NUL), then zero padding to a multiple of 8
/// ```
struct Qcow2BitmapEntry: Sendable, Equatable {
    var tableOffset: UInt64
    var tableSize: UInt32
    var flags: UInt32
    var type: UInt8
    var granularityBits: UInt8
    var extraDataSize: UInt32
    var name: String
    /// Where the entry starts inside the directory (its flags are at +12).
    var position: Int

    enum Flag {
        /// Not saved correctly: contents may be outdated (QEMU calls it inconsistent).
        static let inUse: UInt32 = 1 << 0
        /// Enabled: must track every change of the virtual disk.
        static let auto: UInt32 = 1 << 1
        /// Unknown extra data may be ignored (the bitmap stays usable).
        static let extraDataCompatible: UInt32 = 1 << 2
        static let known: UInt32 = inUse | auto | extraDataCompatible
    }

    static let dirtyTrackingType: UInt8 = 1
    static let fixedLength = 24
    static let maxNameLength = 1023
    /// QEMU's granularity range (the format allows 0-63; QEMU loads only these).
    static let granularityBitsRange: ClosedRange<UInt8> = 9...31
    /// QEMU's limit on table entries.
    static let maxTableSize: UInt32 = 0x800_0000
    /// QEMU's limit on bitmap data (table entries × cluster size).
    static let maxDataBytes: UInt64 = 0x2000_0000

    var inUse: Bool { flags & Flag.inUse != 0 }
    var isAuto: Bool { flags & Flag.auto != 0 }
    var granularity: UInt64 { 1 << UInt64(granularityBits) }
}

/// Parsing and writing the bitmap directory. Every field comes from the image file, so every
/// length is checked against the bytes that remain before it is used.
enum Qcow2BitmapDirectory {
    static func bad(_ why: String) -> BlockDeviceError { BlockDeviceError(.badFormat, "qcow2: bitmap directory: \(why)") }

    /// Parses `count` entries that must fill `bytes` exactly.
    static func parse(_ bytes: [UInt8], count: UInt32) throws -> [Qcow2BitmapEntry] {
        var entries: [Qcow2BitmapEntry] = []
        var names = Set<String>()
        var position = 0
        for index in 0..<Int(count) {
            guard bytes.count - position >= Qcow2BitmapEntry.fixedLength else { throw bad("entry \(index) runs past the directory") }
            let nameSize = Int(bytes.be16(at: position + 18))
            let extraSize = UInt64(bytes.be32(at: position + 20))
            // Extra data of any declared size must still lie inside the directory.
            let variable = extraSize + UInt64(nameSize)
            let unpadded = UInt64(Qcow2BitmapEntry.fixedLength) + variable
            let padded = (unpadded + 7) / 8 * 8
            guard padded <= UInt64(bytes.count - position) else { throw bad("entry \(index) runs past the directory") }
            guard nameSize > 0, nameSize <= Qcow2BitmapEntry.maxNameLength else {
                throw bad("entry \(index) has a name of \(nameSize) bytes (1...1023 allowed)")
            }
            let nameStart = position + Qcow2BitmapEntry.fixedLength + Int(extraSize)
            let nameBytes = bytes[nameStart..<nameStart + nameSize]
            guard let name = String(validating: nameBytes, as: UTF8.self), !nameBytes.contains(0) else {
                throw bad("entry \(index) has a name that is not valid UTF-8")
            }
            for padding in bytes[nameStart + nameSize..<position + Int(padded)] where padding != 0 {
                throw bad("bitmap '\(name)' has non-zero padding")
            }
            guard names.insert(name).inserted else { throw bad("bitmap name '\(name)' appears twice") }
            entries.append(Qcow2BitmapEntry(
                tableOffset: bytes.be64(at: position), tableSize: bytes.be32(at: position + 8),
                flags: bytes.be32(at: position + 12), type: bytes[position + 16], granularityBits: bytes[position + 17],
                extraDataSize: UInt32(extraSize), name: name, position: position))
            position += Int(padded)
        }
        guard position == bytes.count else { throw bad("\(bytes.count - position) bytes follow the last entry") }
        return entries
    }

    /// Why this bitmap cannot be used (read or kept up to date) by this driver, or nil when it
    /// can. `needed` is the number of table entries the virtual size requires.
    static func problem(with entry: Qcow2BitmapEntry, clusterSize: UInt64, virtualSize: UInt64, fileLength: UInt64) -> String? {
        if entry.type != Qcow2BitmapEntry.dirtyTrackingType { return "has type \(entry.type) (only dirty tracking, 1, is known)" }
        if entry.flags & ~Qcow2BitmapEntry.Flag.known != 0 {
            return "has unknown flags 0x\(String(entry.flags, radix: 16))"
        }
        if entry.extraDataSize != 0 && entry.flags & Qcow2BitmapEntry.Flag.extraDataCompatible == 0 {
            return "has extra data not marked compatible (it must not be used)"
        }
        if !Qcow2BitmapEntry.granularityBitsRange.contains(entry.granularityBits) {
            return "has granularity_bits \(entry.granularityBits) (9...31 supported)"
        }
        if entry.tableSize > Qcow2BitmapEntry.maxTableSize { return "has a bitmap table of \(entry.tableSize) entries" }
        // QEMU's bound on the bitmap data (512 MiB), which also bounds our memory.
        if UInt64(entry.tableSize) * clusterSize > Qcow2BitmapEntry.maxDataBytes {
            return "has a bitmap table describing more than 512 MiB of bitmap data"
        }
        if entry.tableOffset == 0 || entry.tableOffset % clusterSize != 0 { return "has a bitmap table offset that is not cluster aligned" }
        let tableBytes = UInt64(entry.tableSize) * 8
        guard entry.tableOffset <= fileLength, tableBytes <= fileLength - entry.tableOffset else {
            return "has a bitmap table past the end of the file"
        }
        let needed = tableEntriesNeeded(virtualSize: virtualSize, granularityBits: entry.granularityBits, clusterSize: clusterSize)
        if !entry.inUse && UInt64(entry.tableSize) < needed {
            return "has \(entry.tableSize) table entries where the disk needs \(needed)"
        }
        return nil
    }

    /// Clusters of bitmap data for a disk: one bit per granule, packed 8 per byte.
    static func tableEntriesNeeded(virtualSize: UInt64, granularityBits: UInt8, clusterSize: UInt64) -> UInt64 {
        let bits = (virtualSize >> UInt64(granularityBits)) + (virtualSize & ((1 << UInt64(granularityBits)) - 1) == 0 ? 0 : 1)
        let bitsPerCluster = clusterSize * 8
        return (bits + bitsPerCluster - 1) / bitsPerCluster
    }

    /// The directory bytes with the flags of the named entries changed.
    static func withFlags(_ bytes: [UInt8], entries: [Qcow2BitmapEntry]) -> [UInt8] {
        var bytes = bytes
        for entry in entries where entry.position + 16 <= bytes.count { bytes.putBE32(entry.flags, at: entry.position + 12) }
        return bytes
    }
}

/// A bitmap table entry (qcow2.txt "Bitmap table").
enum Qcow2BitmapTableEntry {
    static let offsetMask: UInt64 = 0x00FF_FFFF_FFFF_FE00
    /// Bits 1-8 and 56-63.
    static let reservedMask: UInt64 = 0xFF00_0000_0000_01FE
    static let allOnes: UInt64 = 1

    enum Meaning: Equatable {
        case zeroes
        case ones
        case data(UInt64)
    }

    static func decode(_ word: UInt64, clusterSize: UInt64, fileLength: UInt64) -> Meaning? {
        guard word & reservedMask == 0 else { return nil }
        let offset = word & offsetMask
        if offset == 0 { return word & allOnes == 0 ? .zeroes : .ones }
        guard word & allOnes == 0, offset % clusterSize == 0, offset <= fileLength, clusterSize <= fileLength - offset else { return nil }
        return .data(offset)
    }
}
