#if canImport(Glibc)
import Glibc
#endif

/// Linux file APIs that Swift's Glibc module does not import (they sit behind `_GNU_SOURCE`).
/// The values are Linux's ABI constants, stable across architectures we build for.
enum LinuxFileAPI {
    static let seekData: Int32 = 3
    static let seekHole: Int32 = 4
    static let fallocKeepSize: Int32 = 0x01
    static let fallocPunchHole: Int32 = 0x02
    static let fallocZeroRange: Int32 = 0x10
    static let ofdGetLock: Int32 = 36
    static let ofdSetLock: Int32 = 37
    /// `_IOR(0x12, 114, size_t)`: size of a block device in bytes.
    static let blkGetSize64: UInt = 0x8008_1272

    private typealias FallocateFunction = @convention(c) (Int32, Int32, off_t, off_t) -> Int32

    /// `fallocate(2)`, looked up once at run time because the declaration is not importable.
    private static let fallocateFunction: FallocateFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "fallocate") else { return nil }
        return unsafeBitCast(symbol, to: FallocateFunction.self)
    }()

    /// Returns 0 or the errno of the failure (EINTR retried).
    static func fallocate(_ fd: Int32, mode: Int32, offset: UInt64, length: UInt64) -> Int32 {
        guard let function = fallocateFunction else { return EOPNOTSUPP }
        while true {
            if function(fd, mode, off_t(offset), off_t(length)) == 0 { return 0 }
            let e = errno
            if e != EINTR { return e }
        }
    }
}
