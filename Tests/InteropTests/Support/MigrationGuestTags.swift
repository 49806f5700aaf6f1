import Foundation

/// Reads the tags the boot-sector guest writes (Fixtures/migration/boot-sector.S): per sector
/// "BMIG", counter, own LBA, ~counter, across LBA [2048, 34816) = [1 MiB, 17 MiB).
struct MigrationGuestTags: CustomStringConvertible {
    static let region = 2048..<34816

    /// Sectors carrying a valid tag.
    var tagged = 0
    /// Sectors that start with "BMIG" but whose LBA or complement is wrong.
    var corrupt = 0
    /// The highest counter found, and where.
    var maxCounter: UInt32 = 0
    var maxCounterLBA: Int?

    var description: String {
        "\(tagged) tagged sectors, \(corrupt) corrupt, highest counter \(maxCounter) at LBA \(maxCounterLBA.map(String.init) ?? "-")"
    }

    /// Scans the guest view of a qcow2 image (converted to raw first; `-U`: the destination
    /// QEMU may have it open).
    static func scan(qcow2 path: String, in dir: TempDir) throws -> MigrationGuestTags {
        let raw = dir.file("scan-\(UUID().uuidString.prefix(6)).raw")
        defer { unlink(raw) }
        let convert = try run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, raw])
        guard convert.succeeded else { throw MigrationTestFailure("\(convert)") }
        return try scan(raw)
    }

    static func scan(_ path: String) throws -> MigrationGuestTags {
        var tags = MigrationGuestTags()
        for sector in try GuestSectorTag.scan(path, magic: 0x4749_4D42, lbas: region) {
            guard sector.valid else { tags.corrupt += 1; continue }
            tags.tagged += 1
            if sector.counter > tags.maxCounter {
                tags.maxCounter = sector.counter
                tags.maxCounterLBA = sector.lba
            }
        }
        return tags
    }

    /// The 512 bytes of one sector.
    static func sector(_ path: String, lba: Int) throws -> Data {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(lba * 512))
        return try handle.read(upToCount: 512) ?? Data()
    }
}

/// A sector tagged by one of the test guests (the boot-sector guest's "BMIG", the Linux
/// dirtier's "LMIG"): magic, counter at byte 4, the sector's own LBA at 8, ~counter at 16,
/// all little-endian.
struct GuestSectorTag {
    let lba: Int
    let counter: UInt32
    /// The recorded LBA is the sector's own and the complement matches the counter.
    let valid: Bool
    /// The 64-bit word at byte 32 (the Linux dirtier keeps its memory-error count there).
    let word32: UInt64

    /// Every sector of `lbas` in the raw image at `path` that starts with `magic`.
    static func scan(_ path: String, magic: UInt32, lbas: Range<Int>) throws -> [GuestSectorTag] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(lbas.lowerBound * 512))
        let data = try handle.read(upToCount: lbas.count * 512) ?? Data()
        return data.withUnsafeBytes { raw in
            (0..<(raw.count / 512)).compactMap { index in
                let base = index * 512
                func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
                    T(littleEndian: raw.loadUnaligned(fromByteOffset: base + offset, as: T.self))
                }
                guard field(0, UInt32.self) == magic else { return nil }
                let lba = lbas.lowerBound + index
                let counter = field(4, UInt32.self)
                return GuestSectorTag(lba: lba, counter: counter,
                                      valid: field(8, UInt64.self) == UInt64(lba) && field(16, UInt32.self) == ~counter,
                                      word32: field(32, UInt64.self))
            }
        }
    }
}
