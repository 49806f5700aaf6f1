#if canImport(Glibc)
import Glibc
#endif

/// Byte-range locks on an image file in the layout QEMU uses, so QEMU tools and other
/// swiftnbd processes see a writable export as "in use".
///
/// QEMU's file driver (observed with qemu 7.2 by experiment, see RawFileDevice tests) uses
/// open-file-description locks (`F_OFD_SETLK`), all of them shared (`F_RDLCK`), one byte per
/// permission bit:
/// - byte `100 + bit` is held while the process *uses* permission `bit`;
/// - byte `200 + bit` is held while the process *refuses to share* permission `bit`.
/// Bits: 0 consistent read, 1 write, 2 write-unchanged, 3 resize.
/// Before taking its bytes a process probes the opposite set with `F_OFD_GETLK`/`F_WRLCK`:
/// for each permission it wants, someone holding `200 + bit` is a conflict ("Failed to get
/// "write" lock"); for each permission it refuses to share, someone holding `100 + bit` is
/// one ("Failed to get shared "write" lock").
///
/// A writable export uses read+write and refuses to share write and resize (what qemu-nbd
/// does), so a second writer — qemu-io, qemu-img, QEMU or another swiftnbd — is refused,
/// while read-only inspection that shares writers (`qemu-img info`) still works. A reader
/// (a read-only qcow2 image or a backing file) uses read and refuses the same, as QEMU does
/// for an image and its backing files.
public struct ImageLock: Sendable {
    enum Permission: Int64, CaseIterable {
        case consistentRead = 0, write = 1, writeUnchanged = 2, resize = 3
        var name: String {
            switch self {
            case .consistentRead: "consistent read"
            case .write: "write"
            case .writeUnchanged: "write unchanged"
            case .resize: "resize"
            }
        }
    }
    static let usedBase: Int64 = 100
    static let unsharedBase: Int64 = 200

    var uses: [Permission]
    var refusesToShare: [Permission]

    public static let writer = ImageLock(uses: [.consistentRead, .write], refusesToShare: [.write, .resize])
    public static let reader = ImageLock(uses: [.consistentRead], refusesToShare: [.write, .resize])

    /// Probes for conflicts, then takes the bytes. Throws `.locked` naming the conflict.
    public func acquire(fd: Int32, path: String) throws {
        for permission in uses where try isHeldByOther(fd: fd, byte: Self.unsharedBase + permission.rawValue) {
            throw BlockDeviceError(.locked, "\(path): failed to get \"\(permission.name)\" lock: another process is using the image")
        }
        for permission in refusesToShare where try isHeldByOther(fd: fd, byte: Self.usedBase + permission.rawValue) {
            throw BlockDeviceError(.locked, "\(path): failed to get shared \"\(permission.name)\" lock: another process is writing the image")
        }
        let bytes = uses.map { Self.usedBase + $0.rawValue } + refusesToShare.map { Self.unsharedBase + $0.rawValue }
        for byte in bytes {
            var lock = flock()
            lock.l_type = Int16(F_RDLCK)
            lock.l_whence = Int16(SEEK_SET)
            lock.l_start = off_t(byte)
            lock.l_len = 1
            if fcntl(fd, LinuxFileAPI.ofdSetLock, &lock) != 0 {
                let e = errno
                if e == EAGAIN || e == EACCES {
                    throw BlockDeviceError(.locked, "\(path): byte \(byte) is locked by another process", errno: e)
                }
                // File systems without lock support (some network mounts): QEMU warns and
                // goes on; so do we, the lock is advisory anyway.
                if e == EINVAL || e == ENOLCK || e == EOPNOTSUPP { return }
                throw BlockDeviceError.fromErrno(e, "\(path): locking byte \(byte)")
            }
        }
    }

    /// Drops every lock byte this descriptor holds (on close; the descriptor may live on).
    public static func release(fd: Int32) {
        var lock = flock()
        lock.l_type = Int16(F_UNLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(usedBase)
        lock.l_len = off_t(2 * usedBase)
        _ = fcntl(fd, LinuxFileAPI.ofdSetLock, &lock)
    }

    private func isHeldByOther(fd: Int32, byte: Int64) throws -> Bool {
        var probe = flock()
        probe.l_type = Int16(F_WRLCK)
        probe.l_whence = Int16(SEEK_SET)
        probe.l_start = off_t(byte)
        probe.l_len = 1
        if fcntl(fd, LinuxFileAPI.ofdGetLock, &probe) != 0 {
            let e = errno
            if e == EINVAL || e == ENOLCK || e == EOPNOTSUPP { return false }
            throw BlockDeviceError.fromErrno(e, "probing lock byte \(byte)")
        }
        return probe.l_type != Int16(F_UNLCK)
    }
}
