#if canImport(Glibc)
import Glibc
#endif
import BlockDevices

/// A raw file at the bottom of a backing chain (read-only). Holes found with
/// `SEEK_DATA`/`SEEK_HOLE` are reported as zero, like QEMU's file driver does.
final class RawLayer: ChainLayer, @unchecked Sendable {
    let file: HostFile
    let size: UInt64
    // Linux values; Glibc only exports the names under _GNU_SOURCE.
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4

    init(path: String) throws {
        file = try HostFile(path: path, writable: false)
        try file.lock()
        size = try file.length()
    }

    func releaseLocks() { file.unlock() }

    func readGuest(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try file.readZeroFilled(into: buffer, at: offset)
    }

    func chainStatus(offset: UInt64, length: UInt64) throws -> ChainStatus {
        let end = offset + length
        guard let data = file.seek(RawLayer.seekData, from: offset) else {
            // ENXIO: no data at or after offset; or no SEEK_DATA support: call it all data.
            return errno == ENXIO ? ChainStatus(length: length, flags: [.hole, .zero], depth: 1)
                                  : ChainStatus(length: length, flags: [], depth: 1)
        }
        if data > offset {
            return ChainStatus(length: min(data, end) - offset, flags: [.hole, .zero], depth: 1)
        }
        let hole = file.seek(RawLayer.seekHole, from: offset) ?? end
        return ChainStatus(length: max(1, min(hole, end) - offset), flags: [], depth: 1)
    }
}
