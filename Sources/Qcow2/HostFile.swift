#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import BlockDevices
import Foundation

/// One open file descriptor of an image file (or a raw backing file), closed in `deinit`.
///
/// All I/O is positional (`pread`/`pwrite`), so one handle serves any number of threads
/// without a shared file offset.
final class HostFile: @unchecked Sendable {
    let path: String
    let writable: Bool
    private let fd: Int32
    private let syncState = NSCondition()
    private var syncRunning = false
    private var syncsStarted: UInt64 = 0
    private var syncsFinished: UInt64 = 0
    private var lastFailedSync: UInt64 = 0

    init(path: String, writable: Bool) throws {
        self.path = path
        self.writable = writable
        let flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC
        let fd = open(path, flags)
        guard fd >= 0 else {
            let err = errno
            let code: BlockDeviceError.Code = err == ENOENT ? .notFound : (err == EROFS || err == EACCES ? .readOnly : .io)
            throw BlockDeviceError(code, "cannot open \(path): \(String(cString: strerror(err)))", errno: err)
        }
        self.fd = fd
    }

    /// Creates (or truncates) a file for a new image.
    init(creating path: String) throws {
        self.path = path
        self.writable = true
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let err = errno
            throw BlockDeviceError(.io, "cannot create \(path): \(String(cString: strerror(err)))", errno: err)
        }
        self.fd = fd
    }

    deinit { _ = Glibc.close(fd) }

    /// Takes QEMU-compatible locks (see `ImageLock`): writer locks when open for writing.
    func lock() throws { try (writable ? ImageLock.writer : ImageLock.reader).acquire(fd: fd, path: path) }
    func unlock() { ImageLock.release(fd: fd) }

    /// Current length of the file in bytes.
    func length() throws -> UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("fstat") }
        return UInt64(st.st_size)
    }

    /// Reads exactly `buffer.count` bytes at `offset`; bytes past end of file read as zero
    /// (images need not end on a cluster boundary, and compressed streams may run past EOF).
    func readZeroFilled(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, try position(offset, done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("read at \(offset)")
            }
            if n == 0 {
                (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            done += n
        }
    }

    /// Reads exactly `count` bytes at `offset`, failing if the file is shorter: used for
    /// metadata that must exist (header, L1, L2, refcount structures).
    func readExactly(_ count: Int, at offset: UInt64, what: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try readExactly(into: $0, at: offset, what: what) }
        return bytes
    }

    /// Fills `buffer` from `offset`, failing if the file is shorter.
    func readExactly(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, what: String) throws {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, try position(offset, done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("read of \(what) at \(offset)")
            }
            if n == 0 {
                throw BlockDeviceError(.badFormat, "\(path): \(what) at offset \(offset) lies past the end of the file")
            }
            done += n
        }
    }

    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws {
        var done = 0
        while done < data.count {
            let n = pwrite(fd, data.baseAddress! + done, data.count - done, try position(offset, done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("write at \(offset)")
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Makes every write completed before the call durable (the ordering barrier of the
    /// metadata protocol).
    ///
    /// Group commit: callers that arrive while an `fdatasync` is running wait for the next one,
    /// which one of them starts for all, so N concurrent writers cost about two syncs, not N.
    func sync() throws {
        syncState.lock()
        defer { syncState.unlock() }
        // A sync already running may have started before our writes: we need one started later.
        let target = syncsStarted + 1
        while syncsFinished < target {
            if syncRunning {
                syncState.wait()
                continue
            }
            syncRunning = true
            syncsStarted += 1
            let generation = syncsStarted
            syncState.unlock()
            var failure: BlockDeviceError?
            while fdatasync(fd) != 0 {
                if errno == EINTR { continue }
                failure = ioError("fdatasync")
                break
            }
            syncState.lock()
            syncRunning = false
            syncsFinished = generation
            if failure != nil { lastFailedSync = generation }
            syncState.broadcast()
        }
        // Any failure of a sync we relied on fails us too: the kernel may have dropped dirty pages.
        if lastFailedSync >= target {
            throw BlockDeviceError(.io, "\(path): fdatasync failed")
        }
    }

    /// Gives a freed cluster's space back to the file system (best effort: errors ignored,
    /// the cluster reads as zero either way once it is reallocated and rewritten).
    func punchHole(at offset: UInt64, length: UInt64) {
        _ = LinuxFileAPI.fallocate(fd, mode: LinuxFileAPI.fallocPunchHole | LinuxFileAPI.fallocKeepSize, offset: offset, length: length)
    }

    /// Makes `offset..<offset+length` read as zeroes without writing them (growing the file
    /// if needed). False where the file system cannot.
    func zeroRange(at offset: UInt64, length: UInt64) -> Bool {
        LinuxFileAPI.fallocate(fd, mode: LinuxFileAPI.fallocZeroRange, offset: offset, length: length) == 0
    }

    /// Makes the file at least `end` bytes long; never shortens it, so it is safe while other
    /// threads write (and so extend the file) elsewhere, unlike `ftruncate`. The bytes added
    /// read as zero. Allocates the last block only (`fallocate`), or writes one zero byte there
    /// where `fallocate` is not supported. Returns the length before the call.
    @discardableResult
    func extend(to end: UInt64) throws -> UInt64 {
        let before = try length()
        guard end > before else { return before }
        if LinuxFileAPI.fallocate(fd, mode: 0, offset: end - 1, length: 1) != 0 { try write([0], at: end - 1) }
        return before
    }

    func truncate(to length: UInt64) throws {
        guard ftruncate(fd, try position(length, 0)) == 0 else { throw ioError("ftruncate") }
    }

    /// Whether the bytes at `offset` are stored (`true`) or a hole/past EOF (`false`), and for
    /// how many bytes (at least 1, at most `length`) that holds. Where `SEEK_DATA` is not
    /// supported everything counts as data, which is never wrong, only less precise.
    func storedRun(offset: UInt64, length: UInt64) -> (stored: Bool, length: UInt64) {
        guard let start = off_t(exactly: offset) else { return (false, length) }
        let end = length > UInt64.max - offset ? UInt64.max : offset + length
        let data = lseek(fd, start, LinuxFileAPI.seekData)
        if data < 0 { return (errno != ENXIO, length) }
        if UInt64(data) > offset { return (false, min(UInt64(data), end) - offset) }
        let hole = lseek(fd, start, LinuxFileAPI.seekHole)
        let stop = hole < 0 ? end : min(UInt64(hole), end)
        return (true, max(1, stop - offset))
    }

    /// `offset + done` as a file position; an offset no file can have (from a corrupt image)
    /// is an error for this request, not an overflow trap.
    private func position(_ offset: UInt64, _ done: Int) throws -> off_t {
        guard let base = off_t(exactly: offset) else {
            throw BlockDeviceError(.badFormat, "\(path): offset \(offset) is beyond any file")
        }
        let (sum, overflow) = base.addingReportingOverflow(off_t(done))
        guard !overflow else { throw BlockDeviceError(.badFormat, "\(path): offset \(offset)+\(done) is beyond any file") }
        return sum
    }

    private func ioError(_ what: String) -> BlockDeviceError {
        let err = errno
        let code: BlockDeviceError.Code = err == ENOSPC ? .noSpace : .io
        return BlockDeviceError(code, "\(path): \(what) failed: \(String(cString: strerror(err)))", errno: err)
    }
}
