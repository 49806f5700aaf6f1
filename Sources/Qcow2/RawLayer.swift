#if canImport(Glibc)
import Glibc
#endif
import BlockDevices

/// A raw file at the bottom of a backing chain (read-only). Holes found with
/// `SEEK_DATA`/`SEEK_HOLE` are reported as zero, like QEMU's file driver does.
final class RawLayer: ChainLayer, @unchecked Sendable {
    let file: HostFile
    let size: UInt64

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
        let run = file.storedRun(offset: offset, length: length)
        return ChainStatus(length: run.length, flags: run.stored ? [] : [.hole, .zero], depth: 1)
    }
}
