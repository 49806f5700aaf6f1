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
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(region.lowerBound * 512))
        let data = try handle.read(upToCount: region.count * 512) ?? Data()
        var tags = MigrationGuestTags()
        data.withUnsafeBytes { raw in
            for index in 0..<(raw.count / 512) {
                let base = index * 512
                guard raw.loadUnaligned(fromByteOffset: base, as: UInt32.self) == 0x4749_4D42 else { continue }
                let counter = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self))
                let lba = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self))
                let complement = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: base + 16, as: UInt32.self))
                let expectedLBA = UInt64(region.lowerBound + index)
                guard lba == expectedLBA, complement == ~counter else { tags.corrupt += 1; continue }
                tags.tagged += 1
                if counter > tags.maxCounter {
                    tags.maxCounter = counter
                    tags.maxCounterLBA = Int(expectedLBA)
                }
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
