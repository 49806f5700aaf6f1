#if canImport(Glibc)
import Glibc
#endif
import BlockDevices

/// QEMU-compatible advisory locks on the files of a chain, so qemu-img/qemu-io/QEMU (and another
/// swiftnbd) cannot write an image we write or read, and we refuse an image they are writing.
/// Same scheme as QEMU's file driver (and BlockDevices' raw files): shared open-file-description
/// locks on byte 100+bit ("uses permission") and 200+bit ("refuses to share it"); bits 0
/// consistent read, 1 write, 3 resize. A writer uses read+write, a reader (read-only image or
/// backing file) uses read; both refuse to share write and resize, as QEMU does for an image
/// and its backing files.
enum WriterLock {
    // Linux fcntl commands (not exported by Glibc without _GNU_SOURCE).
    static let ofdGetLock: Int32 = 36
    static let ofdSetLock: Int32 = 37
    static let refusesToShare: [(Int64, String)] = [(1, "write"), (3, "resize")]

    static func acquire(fd: Int32, path: String, writing: Bool) throws {
        let uses: [(Int64, String)] = writing ? [(0, "consistent read"), (1, "write")] : [(0, "consistent read")]
        for (bit, name) in uses where try heldByOther(fd, byte: 200 + bit) {
            throw BlockDeviceError(.locked, "\(path): failed to get \"\(name)\" lock: another process is using the image")
        }
        for (bit, name) in refusesToShare where try heldByOther(fd, byte: 100 + bit) {
            throw BlockDeviceError(.locked, "\(path): failed to get shared \"\(name)\" lock: another process is writing the image")
        }
        for byte in uses.map({ 100 + $0.0 }) + refusesToShare.map({ 200 + $0.0 }) {
            var lock = flock()
            lock.l_type = Int16(F_RDLCK)
            lock.l_whence = Int16(SEEK_SET)
            lock.l_start = off_t(byte)
            lock.l_len = 1
            if fcntl(fd, ofdSetLock, &lock) != 0 {
                let e = errno
                if e == EINVAL || e == ENOLCK || e == EOPNOTSUPP { return }  // no lock support: advisory anyway
                throw BlockDeviceError(.locked, "\(path): cannot lock byte \(byte): \(String(cString: strerror(e)))", errno: e)
            }
        }
    }

    /// Drops our lock bytes (on close; the descriptor itself lives until the image is released).
    static func release(fd: Int32) {
        var lock = flock()
        lock.l_type = Int16(F_UNLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 100
        lock.l_len = 200
        _ = fcntl(fd, ofdSetLock, &lock)
    }

    private static func heldByOther(_ fd: Int32, byte: Int64) throws -> Bool {
        var probe = flock()
        probe.l_type = Int16(F_WRLCK)
        probe.l_whence = Int16(SEEK_SET)
        probe.l_start = off_t(byte)
        probe.l_len = 1
        if fcntl(fd, ofdGetLock, &probe) != 0 {
            let e = errno
            if e == EINVAL || e == ENOLCK || e == EOPNOTSUPP { return false }
            throw BlockDeviceError(.io, "probing lock byte \(byte): \(String(cString: strerror(e)))", errno: e)
        }
        return probe.l_type != Int16(F_UNLCK)
    }
}
