#if canImport(Glibc)
import Glibc
#endif

/// Reads a whole (small) credential file, with a clear error naming the file.
func readWholeFile(_ path: String, what: String, limit: Int = 16 << 20) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
        let e = errno
        throw TLSError(.credentials, "cannot read \(what) '\(path)': \(String(cString: strerror(e)))")
    }
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            let e = errno
            if e == EINTR { continue }
            throw TLSError(.credentials, "cannot read \(what) '\(path)': \(String(cString: strerror(e)))")
        }
        if n == 0 { break }
        result.append(contentsOf: chunk[..<n])
        if result.count > limit { throw TLSError(.credentials, "\(what) '\(path)' is too large") }
    }
    return result
}

func fileExists(_ path: String) -> Bool {
    access(path, F_OK) == 0
}

/// Writes `bytes` to `path` (replacing it) with the given permission bits.
func writeWholeFile(_ path: String, _ bytes: [UInt8], mode: mode_t) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else {
        let e = errno
        throw TLSError(.io, "cannot create '\(path)': \(String(cString: strerror(e)))")
    }
    defer { close(fd) }
    _ = fchmod(fd, mode)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 {
            let e = errno
            if e == EINTR { continue }
            throw TLSError(.io, "cannot write '\(path)': \(String(cString: strerror(e)))")
        }
        done += n
    }
}
