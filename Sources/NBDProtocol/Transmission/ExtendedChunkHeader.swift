/// An extended reply chunk header (extended headers negotiated; simple replies are then forbidden).
///
/// ```
/// 32 bytes, server → client
///  0  u32 0x6e8a278c magic
///  4  u16 flags      (DONE = 0x1)
///  6  u16 type       (NBD_REPLY_TYPE_*)
///  8  u64 cookie     (echo)
/// 16  u64 offset     (echo of the request offset)
/// 24  u64 length of the chunk payload
/// ```
public struct ExtendedChunkHeader: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 32

    public var flags: ReplyFlags
    public var type: NBDChunkType
    public var cookie: UInt64
    public var offset: UInt64
    public var length: UInt64

    public init(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, offset: UInt64, length: UInt64) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.extendedReply)
        writer.append(flags.rawValue)
        writer.append(type.rawValue)
        writer.append(cookie)
        writer.append(offset)
        writer.append(length)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.extendedReply, "extended reply magic")
        flags = ReplyFlags(rawValue: try reader.readU16("chunk flags"))
        type = NBDChunkType(rawValue: try reader.readU16("chunk type"))
        cookie = try reader.readU64("chunk cookie")
        offset = try reader.readU64("chunk offset")
        length = try reader.readU64("chunk length")
    }
}
