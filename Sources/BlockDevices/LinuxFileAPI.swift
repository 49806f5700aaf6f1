#if canImport(Glibc)
import Glibc
#endif

/// Linux file APIs that Swift's Glibc module does not import (they sit behind `_GNU_SOURCE`).
/// The values are Linux's ABI constants, stable across architectures we build for.
package enum LinuxFileAPI {
    package static let seekData: Int32 = 3
    package static let seekHole: Int32 = 4
    package static let fallocKeepSize: Int32 = 0x01
    package static let fallocPunchHole: Int32 = 0x02
    package static let fallocZeroRange: Int32 = 0x10
    package static let ofdGetLock: Int32 = 36
    package static let ofdSetLock: Int32 = 37
    /// `_IOR(0x12, 114, size_t)`: size of a block device in bytes.
    package static let blkGetSize64: UInt = 0x8008_1272

    /// `RWF_NOWAIT`: fail with EAGAIN instead of waiting for storage.
    package static let rwfNoWait: Int32 = 0x08

    private typealias PReadV2Function = @convention(c) (Int32, UnsafePointer<iovec>?, Int32, off_t, Int32) -> Int

    private static let preadv2Function: PReadV2Function? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "preadv2") else { return nil }
        return unsafeBitCast(symbol, to: PReadV2Function.self)
    }()

    /// `preadv2(fd, [buffer], offset, RWF_NOWAIT)`: bytes read (possibly short), or -1 with
    /// `errno` set (EAGAIN: not in the page cache; EOPNOTSUPP/ENOSYS: not available).
    package static func preadNoWait(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: off_t) -> Int {
        guard let function = preadv2Function else {
            errno = ENOSYS
            return -1
        }
        var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
        return function(fd, &vector, 1, offset, rwfNoWait)
    }

    private typealias FallocateFunction = @convention(c) (Int32, Int32, off_t, off_t) -> Int32

    /// `fallocate(2)`, looked up once at run time because the declaration is not importable.
    private static let fallocateFunction: FallocateFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }
        return unsafeBitCast(symbol, to: FallocateFunction.self)
    }()

    /// Returns 0 or the errno of the failure (EINTR retried).
    package static func fallocate(_ fd: Int32, mode: Int32, offset: UInt64, length: UInt64) -> Int32 {
        guard let function = fallocateFunction else { return EOPNOTSUPP }
        guard let start = off_t(exactly: offset), let count = off_t(exactly: length) else { return EINVAL }
        while true {
            if function(fd, mode, start, count) == 0 { return 0 }
            let e = errno
            if e != EINTR { return e }
        }
    }
}
