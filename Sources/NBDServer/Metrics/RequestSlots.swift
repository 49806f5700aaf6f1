import NBDProtocol

/// The `command` label of a request, as a small closed set: unknown commands share "other",
/// so a client cannot mint new label values (and with them new series).
enum CommandSlot: Int, CaseIterable {
    case read, write, flush, trim, writeZeroes, cache, blockStatus, other

    init(_ command: NBDCommand) {
        switch command {
        case .read: self = .read
        case .write: self = .write
        case .flush: self = .flush
        case .trim: self = .trim
        case .writeZeroes: self = .writeZeroes
        case .cache: self = .cache
        case .blockStatus: self = .blockStatus
        default: self = .other
        }
    }

    var label: String {
        switch self {
        case .read: "read"
        case .write: "write"
        case .flush: "flush"
        case .trim: "trim"
        case .writeZeroes: "write_zeroes"
        case .cache: "cache"
        case .blockStatus: "block_status"
        case .other: "other"
        }
    }
}

/// The `result` label of a failed request: the NBD errno's name, or "other" for a value the
/// spec does not define (the server never sends one, but the set must stay closed).
enum ErrnoSlot: Int, CaseIterable {
    case EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN, other

    init(_ errno: NBDErrno) {
        switch errno {
        case .EPERM: self = .EPERM
        case .EIO: self = .EIO
        case .ENOMEM: self = .ENOMEM
        case .EINVAL: self = .EINVAL
        case .ENOSPC: self = .ENOSPC
        case .EOVERFLOW: self = .EOVERFLOW
        case .ENOTSUP: self = .ENOTSUP
        case .ESHUTDOWN: self = .ESHUTDOWN
        default: self = .other
        }
    }

    /// The case name is the errno's name ("EPERM", …) or "other".
    var label: String { String(describing: self) }
}

/// The `command` label of the latency histograms: READ, WRITE and FLUSH have their own,
/// everything else shares one.
enum LatencySlot: Int, CaseIterable {
    case read, write, flush, other

    init(_ command: CommandSlot) {
        switch command {
        case .read: self = .read
        case .write: self = .write
        case .flush: self = .flush
        default: self = .other
        }
    }

    /// The case name is the label ("read", …, "other").
    var label: String { String(describing: self) }
}

/// One value per `CommandSlot`, held in stored properties rather than an array: a metric
/// handler read out of an array was retained and released around every call, two atomic
/// read-modify-writes per request (callgrind); one borrowed from a `let` property is not.
struct PerCommand<Value> {
    private let read, write, flush, trim, writeZeroes, cache, blockStatus, other: Value

    init(_ make: (CommandSlot) -> Value) {
        read = make(.read)
        write = make(.write)
        flush = make(.flush)
        trim = make(.trim)
        writeZeroes = make(.writeZeroes)
        cache = make(.cache)
        blockStatus = make(.blockStatus)
        other = make(.other)
    }

    /// Calls `body` with the value of `slot`, borrowed (a returned value would be a copy).
    @inline(__always)
    func with(_ slot: CommandSlot, _ body: (Value) -> Void) {
        switch slot {
        case .read: body(read)
        case .write: body(write)
        case .flush: body(flush)
        case .trim: body(trim)
        case .writeZeroes: body(writeZeroes)
        case .cache: body(cache)
        case .blockStatus: body(blockStatus)
        case .other: body(other)
        }
    }
}
