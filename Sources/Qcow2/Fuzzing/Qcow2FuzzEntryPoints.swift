#if canImport(Glibc)
import Glibc
#endif
import BlockDevices

/// Entry point shared by the libFuzzer target Fuzz/qcow2 and its regression tests: the
/// fuzzer's bytes are an image file, opened with the real driver read-only (read, block status,
/// allocation depth, persistent bitmaps) and then for writing (write, write zeroes, trim, flush,
/// read back, bitmaps recorded and written back).
/// Every input must end in data or a `BlockDeviceError`, never a trap.
///
/// The image lives in a private temporary directory that also holds `base.raw` and
/// `base.qcow2`, so backing names without a '/' are followed inside that directory; an image
/// naming anything else (an absolute or relative path with '/') is opened with a backing
/// depth of 0, which refuses the name before it is resolved: the fuzzer never opens host files.
package enum Qcow2FuzzEntryPoints {
    /// The sandbox directory (created once per process).
    nonisolated(unsafe) static var sandbox: String?

    static func sandboxDirectory() throws -> String {
        if let sandbox { return sandbox }
        let parent = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(parent)/swiftnbd-fuzz-qcow2-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw BlockDeviceError(.io, "fuzz: cannot create a temporary directory")
        }
        let directory = String(cString: made)
        try write([UInt8](repeating: 0x11, count: 64 << 10), to: directory + "/base.raw")
        try Qcow2Creator.create(at: directory + "/base.qcow2", options: Qcow2CreateOptions(size: 1 << 20, clusterSize: 512))
        sandbox = directory
        return directory
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw BlockDeviceError(.io, "fuzz: cannot create \(path)") }
        defer { close(fd) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            guard n > 0 else { throw BlockDeviceError(.io, "fuzz: cannot write \(path)") }
            done += n
        }
    }

    package static func image(_ bytes: [UInt8]) {
        guard let directory = try? sandboxDirectory() else { fatalError("fuzz: no sandbox directory") }
        let path = directory + "/image.qcow2"
        guard (try? write(bytes, to: path)) != nil else { fatalError("fuzz: cannot write the image") }
        // Backing names that could leave the sandbox are refused before they are resolved.
        var depth = 2
        if let header = try? Qcow2Header.parse(bytes, fileLength: UInt64(bytes.count)),
           let name = header.backingFileName, name.contains("/") {
            depth = 0
        }
        if let image = try? Qcow2Image(path: path, readOnly: true, maxBackingDepth: depth) {
            exercise(image, writing: false)
            try? image.close()
        }
        if let image = try? Qcow2Image(path: path, readOnly: false, maxBackingDepth: depth) {
            exercise(image, writing: true)
            try? image.close()
        }
    }

    /// A fixed schedule of requests at the places the metadata matters: the first clusters,
    /// a cluster boundary, the end of the virtual disk.
    static func exercise(_ image: Qcow2Image, writing: Bool) {
        let size = image.size
        let cluster = image.clusterSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 4096)
        defer { buffer.deallocate() }
        func read(_ offset: UInt64, _ count: Int) {
            guard offset < size else { return }
            let length = Int(min(UInt64(count), size - offset))
            try? image.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0 ..< length]), at: offset)
        }
        let statusLength = min(size, 1 << 32)
        if !writing {
            read(0, 64 << 10)
            read(size >= 4096 ? size - 4096 : 0, 4096)
            read(cluster &- 100, 700)
            _ = try? image.extents(offset: 0, length: statusLength)
            _ = try? image.allocationDepth(offset: 0, length: statusLength)
            _ = try? image.extents(offset: size / 2, length: min(size - size / 2, cluster * 4))
            try? image.cache(offset: 0, length: min(size, cluster * 4))
            exerciseBitmaps(image, statusLength: statusLength)
            return
        }
        let data = [UInt8](repeating: 0xa5, count: 8192)
        data.withUnsafeBytes { bytes in
            if size >= 4096 { try? image.write(UnsafeRawBufferPointer(rebasing: bytes[0 ..< 4096]), at: 0, fua: false) }
            if cluster + 800 <= size {
                try? image.write(UnsafeRawBufferPointer(rebasing: bytes[0 ..< 700]), at: cluster + 100, fua: true)
            }
            if size >= 8192 { try? image.write(UnsafeRawBufferPointer(rebasing: bytes[0 ..< 8192]), at: size - 8192, fua: false) }
        }
        if cluster * 4 <= size {
            try? image.writeZeroes(offset: cluster * 2, length: cluster * 2, mayTrim: true, fastOnly: false, fua: false)
        }
        if size >= 1024 { try? image.writeZeroes(offset: 512, length: 512, mayTrim: false, fastOnly: false, fua: false) }
        try? image.trim(offset: 0, length: min(size, cluster), fua: false)
        try? image.flush()
        read(0, 16 << 10)
        _ = try? image.extents(offset: 0, length: min(size, cluster * 8))
        exerciseBitmaps(image, statusLength: statusLength)
    }

    /// The persistent bitmaps: directory, tables and data (read-only: loaded on this first
    /// use; writable: loaded at open, then changed by the requests above and written back).
    static func exerciseBitmaps(_ image: Qcow2Image, statusLength: UInt64) {
        guard let bitmaps = try? image.persistentBitmaps() else { return }
        for bitmap in bitmaps.prefix(8) {
            _ = try? image.exportableBitmap(named: bitmap.name)
            _ = try? image.dirtyRuns(bitmap: bitmap.name, offset: 0, length: statusLength, maxRuns: 4096)
            if statusLength > 1000 { _ = try? image.dirtyRuns(bitmap: bitmap.name, offset: 777, length: statusLength - 1000, maxRuns: 1) }
        }
    }
}

/// A harness invariant: unlike `precondition`, the message survives optimised builds, so the
/// fuzzer's crash report says what was violated.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
