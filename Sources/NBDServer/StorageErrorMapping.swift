import BlockDevices
import NBDProtocol

/// The one mapping from storage errors to NBD errno values (docs/architecture.md §5).
/// NBD errnos are Linux's numbers; host errno values never reach the wire.
enum StorageErrorMapping {
    static func nbdErrno(for error: any Error, command: NBDCommand, flags: CommandFlags) -> NBDErrno {
        guard let storage = error as? BlockDeviceError else { return .EIO }
        switch storage.code {
        case .readOnly: return .EPERM
        case .noSpace: return .ENOSPC
        case .invalidArgument: return .EINVAL
        case .outOfRange:
            // Spec: reads/trims/status beyond the end are EINVAL, writes and zeroing ENOSPC.
            return command == .write || command == .writeZeroes ? .ENOSPC : .EINVAL
        case .notSupported:
            // ENOTSUP is reserved for a FAST_ZERO that cannot be fast; anything else
            // "unsupported" is an invalid request from the client's point of view.
            return command == .writeZeroes && flags.contains(.fastZero) ? .ENOTSUP : .EINVAL
        case .shutdown: return .ESHUTDOWN
        default: return .EIO
        }
    }
}
