/// A simple reply (no negotiation, or non-READ replies in structured mode).
///
/// ```
/// 16 bytes, server → client
///  0  u32 0x67446698 magic
///  4  u32 error      (0 = success, else NBD errno)
///  8  u64 cookie     (echo)
/// then the read data, only for a successful READ, exactly the requested length
/// ```
public struct SimpleReplyHeader: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 16

    public var error: NBDErrno
    public var cookie: UInt64

    public init(error: NBDErrno = .success, cookie: UInt64) {
        self.error = error
        self.cookie = cookie
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.simpleReply)
        writer.append(error.rawValue)
        writer.append(cookie)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.simpleReply, "simple reply magic")
        error = NBDErrno(rawValue: try reader.readU32("simple reply error"))
        cookie = try reader.readU64("simple reply cookie")
    }
}
