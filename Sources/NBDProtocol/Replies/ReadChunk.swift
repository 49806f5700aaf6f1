/// One content chunk of a structured READ reply, as planned by `ReadReplyPlanner`.
public enum ReadChunk: Hashable, Sendable {
    /// Read `length` bytes at `offset` from the device and send them as OFFSET_DATA.
    case data(offset: UInt64, length: UInt64)
    /// Send OFFSET_HOLE: the range reads as zeroes, nothing to read.
    case hole(offset: UInt64, length: UInt64)

    public var offset: UInt64 {
        switch self {
        case .data(let offset, _), .hole(let offset, _): offset
        }
    }

    public var length: UInt64 {
        switch self {
        case .data(_, let length), .hole(_, let length): length
        }
    }
}
