#if canImport(Glibc)
import Glibc
#endif

extension BlockDeviceError {
    /// The one place where a host errno becomes a storage error code. The NBD server maps
    /// the code (not the errno) onward, so host-specific numbers never reach the wire.
    public static func fromErrno(_ errnoValue: Int32, _ what: String,
                                 file: String = #fileID, line: Int = #line) -> BlockDeviceError {
        let code: Code
        switch errnoValue {
        case ENOSPC, EDQUOT, EFBIG: code = .noSpace
        case EROFS, EPERM, EACCES: code = .readOnly
        case EINVAL: code = .invalidArgument
        case EOPNOTSUPP, ENOSYS, ENOTTY: code = .notSupported
        case ENOENT, ENOTDIR: code = .notFound
        case EAGAIN: code = .locked
        case ESHUTDOWN: code = .shutdown
        default: code = .io
        }
        let reason = String(cString: strerror(errnoValue))
        return BlockDeviceError(code, "\(what): \(reason)", errno: errnoValue, file: file, line: line)
    }

    /// `offset..<offset+length` must lie within a device of `size` bytes (overflow-safe).
    public static func checkRange(offset: UInt64, length: UInt64, size: UInt64,
                                  file: String = #fileID, line: Int = #line) throws {
        let (end, overflow) = offset.addingReportingOverflow(length)
        if overflow || end > size {
            throw BlockDeviceError(.outOfRange, "range \(offset)+\(length) exceeds device size \(size)",
                                   file: file, line: line)
        }
    }
}
