/// Error values of simple replies and error chunks (docs/protocol.md §2.10).
///
/// These are **Linux** errno numbers whatever the host: never send a raw host `errno`
/// (Darwin's ENOTSUP is 45, not 95); map explicitly.
public struct NBDErrno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Success in a simple reply; never valid inside an error chunk.
    public static let success = NBDErrno(rawValue: 0)
    public static let permissionDenied = NBDErrno(rawValue: 1)      // EPERM
    public static let io = NBDErrno(rawValue: 5)                    // EIO
    public static let outOfMemory = NBDErrno(rawValue: 12)          // ENOMEM
    public static let invalidArgument = NBDErrno(rawValue: 22)      // EINVAL
    public static let noSpace = NBDErrno(rawValue: 28)              // ENOSPC
    public static let overflow = NBDErrno(rawValue: 75)             // EOVERFLOW
    public static let notSupported = NBDErrno(rawValue: 95)         // ENOTSUP
    public static let shutdown = NBDErrno(rawValue: 108)            // ESHUTDOWN

    /// Spec names, for readers who know them.
    public static let EPERM = permissionDenied
    public static let EIO = io
    public static let ENOMEM = outOfMemory
    public static let EINVAL = invalidArgument
    public static let ENOSPC = noSpace
    public static let EOVERFLOW = overflow
    public static let ENOTSUP = notSupported
    public static let ESHUTDOWN = shutdown

    /// Every value the spec defines besides success.
    public static let known: Set<NBDErrno> = [.EPERM, .EIO, .ENOMEM, .EINVAL, .ENOSPC, .EOVERFLOW, .ENOTSUP, .ESHUTDOWN]

    /// What a client must act on: unknown non-zero values count as EINVAL (spec rule).
    public var normalized: NBDErrno {
        self == .success || Self.known.contains(self) ? self : .EINVAL
    }

    public var description: String {
        switch self {
        case .success: "success"
        case .EPERM: "EPERM"
        case .EIO: "EIO"
        case .ENOMEM: "ENOMEM"
        case .EINVAL: "EINVAL"
        case .ENOSPC: "ENOSPC"
        case .EOVERFLOW: "EOVERFLOW"
        case .ENOTSUP: "ENOTSUP"
        case .ESHUTDOWN: "ESHUTDOWN"
        default: "NBD errno \(rawValue)"
        }
    }
}
