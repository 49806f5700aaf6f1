/// What the first 4 bytes of a server message in transmission say it is.
public enum ReplyMagic: Hashable, Sendable {
    case simple
    case structured
    case extended

    /// Classifies a 32-bit reply magic; throws `.badMagic` for anything else (hard disconnect).
    public init(magic: UInt32) throws {
        switch magic {
        case NBDMagic.simpleReply: self = .simple
        case NBDMagic.structuredReply: self = .structured
        case NBDMagic.extendedReply: self = .extended
        default: throw NBDProtocolError(.badMagic, "unknown reply magic 0x\(String(magic, radix: 16))")
        }
    }

    /// Classifies the first 4 bytes of a reply.
    public init(firstFourBytes bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        let magic = try reader.readU32("reply magic")
        try reader.expectEnd("reply magic")
        try self.init(magic: magic)
    }

    /// Total header size for this kind.
    public var headerSize: Int {
        switch self {
        case .simple: SimpleReplyHeader.wireSize
        case .structured: StructuredChunkHeader.wireSize
        case .extended: ExtendedChunkHeader.wireSize
        }
    }
}

/// One view of a structured or extended chunk header, so a client handles both forms the same way.
public struct ReplyChunkHeader: Hashable, Sendable {
    public var flags: ReplyFlags
    public var type: NBDChunkType
    public var cookie: UInt64
    /// The echoed request offset (extended form only).
    public var offset: UInt64?
    public var length: UInt64

    public init(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, offset: UInt64?, length: UInt64) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    public init(_ header: StructuredChunkHeader) {
        self.init(flags: header.flags, type: header.type, cookie: header.cookie, offset: nil, length: UInt64(header.length))
    }

    public init(_ header: ExtendedChunkHeader) {
        self.init(flags: header.flags, type: header.type, cookie: header.cookie, offset: header.offset, length: header.length)
    }

    public var isDone: Bool { flags.contains(.done) }

    /// Checks the rules of an `NBD_REPLY_TYPE_NONE` chunk: length 0 and DONE set.
    public func validateNoneChunk() throws {
        guard type == .none else { return }
        guard length == 0 else {
            throw NBDProtocolError(.invalidValue, "NONE chunk has length \(length), must be 0")
        }
        guard isDone else {
            throw NBDProtocolError(.invalidValue, "NONE chunk without the DONE flag")
        }
    }
}
