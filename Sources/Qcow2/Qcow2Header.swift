import BlockDevices

/// The qcow2 header of cluster 0, with its extensions and the backing file name, validated.
///
/// Byte layout (big-endian):
/// ```
///   0 magic "QFI\xfb"        4 version (2|3)        8 backing_file_offset   16 backing_file_size
///  20 cluster_bits          24 size                32 crypt_method          36 l1_size
///  40 l1_table_offset       48 refcount_table_offset 56 refcount_table_clusters
///  60 nb_snapshots          64 snapshots_offset    -- v2 ends at 72 --
///  72 incompatible          80 compatible          88 autoclear             96 refcount_order
/// 100 header_length        104 compression_type (only when header_length > 104)
/// ```
/// then header extensions (type u32, length u32, data padded to 8) up to a type-0 terminator.
struct Qcow2Header: Sendable, Equatable {
    static let magic: UInt32 = 0x5146_49FB
    /// QEMU's limits, which we share so every image we accept QEMU accepts too.
    static let maxL1Bytes: UInt64 = 32 << 20
    static let maxRefcountTableBytes: UInt64 = 8 << 20
    static let maxBackingNameLength: UInt32 = 1023

    enum ExtensionType {
        static let end: UInt32 = 0
        static let backingFormat: UInt32 = 0xE279_2ACA
        static let featureNameTable: UInt32 = 0x6803_F857
        static let bitmaps: UInt32 = 0x2385_2875
        static let fullDiskEncryption: UInt32 = 0x0537_BE77
        static let externalDataFile: UInt32 = 0x4441_5441
    }

    var version: UInt32
    var backingFileOffset: UInt64
    var backingFileSize: UInt32
    var clusterBits: UInt32
    var size: UInt64
    var cryptMethod: UInt32
    var l1Size: UInt32
    var l1TableOffset: UInt64
    var refcountTableOffset: UInt64
    var refcountTableClusters: UInt32
    var snapshotCount: UInt32
    var snapshotsOffset: UInt64
    var incompatible: Qcow2IncompatibleFeatures
    var compatible: Qcow2CompatibleFeatures
    var autoclear: Qcow2AutoclearFeatures
    var refcountOrder: UInt32
    var headerLength: UInt32
    var compressionType: Qcow2CompressionType

    var backingFileName: String?
    var backingFormat: String?
    var hasBitmapsExtension: Bool
    /// The bitmaps extension's fields (nil when absent or not 24 bytes long; the bitmap loader
    /// validates them, so an image whose bitmaps nobody asks about opens read-only as before).
    var bitmapsExtension: Qcow2BitmapsExtension?

    var clusterSize: UInt64 { 1 << UInt64(clusterBits) }

    /// Parses and validates the header from the first bytes of the file (at least the whole of
    /// cluster 0 when the file is that long). Every refusal is a `.badFormat` or
    /// `.unsupportedFeature` error naming the problem.
    static func parse(_ bytes: [UInt8], fileLength: UInt64) throws -> Qcow2Header {
        func bad(_ why: String) -> BlockDeviceError { BlockDeviceError(.badFormat, "qcow2: \(why)") }
        func unsupported(_ why: String) -> BlockDeviceError { BlockDeviceError(.unsupportedFeature, "qcow2: unsupported feature: \(why)") }

        guard bytes.count >= 72 else { throw bad("file too short for a qcow2 header (\(bytes.count) bytes)") }
        guard bytes.be32(at: 0) == magic else { throw bad("bad magic (not a qcow2 image)") }
        let version = bytes.be32(at: 4)
        guard version == 2 || version == 3 else { throw unsupported("qcow2 version \(version) (only 2 and 3 are known)") }
        let clusterBits = bytes.be32(at: 20)
        guard (9...21).contains(clusterBits) else { throw bad("cluster_bits \(clusterBits) outside 9...21 (512 B to 2 MiB)") }
        let clusterSize = UInt64(1) << UInt64(clusterBits)

        var header = Qcow2Header(
            version: version,
            backingFileOffset: bytes.be64(at: 8), backingFileSize: bytes.be32(at: 16),
            clusterBits: clusterBits, size: bytes.be64(at: 24), cryptMethod: bytes.be32(at: 32),
            l1Size: bytes.be32(at: 36), l1TableOffset: bytes.be64(at: 40),
            refcountTableOffset: bytes.be64(at: 48), refcountTableClusters: bytes.be32(at: 56),
            snapshotCount: bytes.be32(at: 60), snapshotsOffset: bytes.be64(at: 64),
            incompatible: [], compatible: [], autoclear: [], refcountOrder: 4, headerLength: 72,
            compressionType: .deflate, backingFileName: nil, backingFormat: nil, hasBitmapsExtension: false,
            bitmapsExtension: nil)

        if version == 3 {
            guard bytes.count >= 104 else { throw bad("file too short for a version 3 header") }
            header.incompatible = Qcow2IncompatibleFeatures(rawValue: bytes.be64(at: 72))
            header.compatible = Qcow2CompatibleFeatures(rawValue: bytes.be64(at: 80))
            header.autoclear = Qcow2AutoclearFeatures(rawValue: bytes.be64(at: 88))
            header.refcountOrder = bytes.be32(at: 96)
            header.headerLength = bytes.be32(at: 100)
            guard header.headerLength >= 104, header.headerLength % 8 == 0, UInt64(header.headerLength) <= clusterSize,
                  Int(header.headerLength) <= bytes.count else {
                throw bad("invalid header_length \(header.headerLength)")
            }
            guard header.refcountOrder <= 6 else { throw bad("refcount_order \(header.refcountOrder) is larger than 6 (64-bit refcounts)") }
            let unknown = header.incompatible.subtracting(.known)
            guard unknown.isEmpty else {
                throw unsupported("unknown incompatible feature bits 0x\(String(unknown.rawValue, radix: 16))")
            }
            if header.headerLength > 104 {
                guard let type = Qcow2CompressionType(rawValue: bytes[104]) else {
                    throw unsupported("compression type \(bytes[104])")
                }
                header.compressionType = type
            }
            if (header.compressionType != .deflate) != header.incompatible.contains(.compressionType) {
                throw bad("compression_type field and incompatible bit 3 disagree")
            }
        }

        // Features we refuse outright, each named.
        if header.incompatible.contains(.corrupt) {
            throw unsupported("the image is marked corrupt (incompatible bit 1); repair it with 'qemu-img check -r all'")
        }
        if header.incompatible.contains(.externalDataFile) { throw unsupported("external data file (incompatible bit 2)") }
        if header.cryptMethod != 0 {
            throw unsupported(header.cryptMethod == 1 ? "AES encryption" : "encryption (crypt_method \(header.cryptMethod), LUKS)")
        }
        if header.incompatible.contains(.extendedL2) && clusterBits < 14 {
            throw bad("extended L2 entries need clusters of at least 16 KiB")
        }

        // Sizes and offsets, checked before anything is shifted or allocated.
        guard header.size <= UInt64(1) << 62 else { throw bad("virtual size \(header.size) is too large") }
        let l2Entries = clusterSize / (header.incompatible.contains(.extendedL2) ? 16 : 8)
        let bytesPerL2 = clusterSize * l2Entries
        let neededL1 = (header.size + bytesPerL2 - 1) / bytesPerL2
        guard UInt64(header.l1Size) * 8 <= maxL1Bytes else { throw bad("L1 table of \(header.l1Size) entries is larger than 32 MiB") }
        guard UInt64(header.l1Size) >= neededL1 else { throw bad("L1 table too small (\(header.l1Size) entries, \(neededL1) needed)") }
        guard header.l1TableOffset % clusterSize == 0 else { throw bad("L1 table offset is not cluster aligned") }
        guard header.l1Size == 0 || header.l1TableOffset != 0 else { throw bad("L1 table at offset 0") }
        guard header.l1TableOffset <= fileLength, UInt64(header.l1Size) * 8 <= fileLength - header.l1TableOffset else {
            throw bad("L1 table (offset \(header.l1TableOffset), \(header.l1Size) entries) extends past the end of the file")
        }
        guard header.refcountTableClusters > 0 else { throw bad("image has no refcount table") }
        guard UInt64(header.refcountTableClusters) * clusterSize <= maxRefcountTableBytes else {
            throw bad("refcount table of \(header.refcountTableClusters) clusters is larger than 8 MiB")
        }
        guard header.refcountTableOffset % clusterSize == 0, header.refcountTableOffset != 0 else {
            throw bad("refcount table offset is not cluster aligned")
        }
        guard header.refcountTableOffset < fileLength else { throw bad("refcount table lies past the end of the file") }
        if header.snapshotCount > 0 {
            guard header.snapshotsOffset % clusterSize == 0, header.snapshotsOffset != 0 else {
                throw bad("snapshot table offset is not cluster aligned")
            }
            guard header.snapshotCount <= 65536 else { throw bad("too many snapshots (\(header.snapshotCount))") }
        }

        // Backing file name: must lie inside cluster 0 (and inside what we read).
        if header.backingFileOffset != 0 {
            guard header.backingFileSize <= maxBackingNameLength else { throw bad("backing file name longer than 1023 bytes") }
            // The offset is checked before the add: a file can put anything up to 2^64 - 1 there.
            guard header.backingFileOffset <= clusterSize else { throw bad("backing file name does not lie inside cluster 0") }
            let end = header.backingFileOffset + UInt64(header.backingFileSize)
            guard header.backingFileOffset >= UInt64(header.headerLength), end <= clusterSize, end <= UInt64(bytes.count) else {
                throw bad("backing file name does not lie inside cluster 0")
            }
            let nameBytes = bytes[Int(header.backingFileOffset)..<Int(end)]
            guard !nameBytes.isEmpty, !nameBytes.contains(0),
                  let name = String(validating: nameBytes, as: UTF8.self) else {
                throw bad("backing file name is empty or not valid UTF-8")
            }
            header.backingFileName = name
        }

        try header.parseExtensions(bytes, clusterSize: clusterSize)
        return header
    }

    /// Walks the extension area: from the end of the fixed header to the backing file name
    /// (or the end of cluster 0). Unknown extensions are skipped.
    private mutating func parseExtensions(_ bytes: [UInt8], clusterSize: UInt64) throws {
        var position = UInt64(headerLength)
        var limit = min(clusterSize, UInt64(bytes.count))
        if backingFileOffset != 0 { limit = min(limit, backingFileOffset) }
        var seen = 0
        while position + 8 <= limit {
            seen += 1
            guard seen <= 4096 else { throw BlockDeviceError(.badFormat, "qcow2: too many header extensions") }
            let type = bytes.be32(at: Int(position))
            let length = UInt64(bytes.be32(at: Int(position) + 4))
            if type == ExtensionType.end { return }
            let dataStart = position + 8
            guard length <= limit - dataStart else {
                throw BlockDeviceError(.badFormat, "qcow2: header extension 0x\(String(type, radix: 16)) too large")
            }
            let data = Array(bytes[Int(dataStart)..<Int(dataStart + length)])
            switch type {
            case ExtensionType.backingFormat:
                guard let format = String(validating: data, as: UTF8.self) else {
                    throw BlockDeviceError(.badFormat, "qcow2: backing format is not valid UTF-8")
                }
                backingFormat = format
            case ExtensionType.bitmaps:
                hasBitmapsExtension = true
                bitmapsExtension = Qcow2BitmapsExtension(data)
            case ExtensionType.externalDataFile:
                throw BlockDeviceError(.unsupportedFeature, "qcow2: unsupported feature: external data file")
            default:
                break // feature name table, encryption pointer (refused above), unknown: skipped
            }
            position = dataStart + (length + 7) / 8 * 8
        }
    }
}
