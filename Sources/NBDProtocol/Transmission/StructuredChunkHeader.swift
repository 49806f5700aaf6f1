/// A structured reply chunk header (structured replies negotiated, no extended headers).
///
/// ```
/// 20 bytes, server → client
///  0  u32 0x668e33ef magic
///  4  u16 flags      (DONE = 0x1)
///  6  u16 type       (NBD_REPLY_TYPE_*)
///  8  u64 cookie     (echo)
/// 16  u32 length of the chunk payload
/// ```
public struct StructuredChunkHeader: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 20

    public var flags: ReplyFlags
    public var type: NBDChunkType
    public var cookie: UInt64
    public var length: UInt32

    public init(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, length: UInt32) {
        self.flags = flags
        self.type = type
        self.cookie = cookie
        self.length = length
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.structuredReply)
        writer.append(flags.rawValue)
        writer.append(type.rawValue)
        writer.append(cookie)
        writer.append(length)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.structuredReply, "structured reply magic")
        flags = ReplyFlags(rawValue: try reader.readU16("chunk flags"))
        type = NBDChunkType(rawValue: try reader.readU16("chunk type"))
        cookie = try reader.readU64("chunk cookie")
        length = try reader.readU32("chunk length")
    }
}
