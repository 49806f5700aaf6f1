/// Payload of an `NBD_REPLY_TYPE_OFFSET_HOLE` chunk: a range that reads as zeroes.
///
/// ```
/// 12 bytes, server → client
///  0  u64 offset
///  8  u32 hole size (≠ 0; 32 bits even with extended headers)
/// ```
public struct OffsetHoleChunkPayload: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 12

    public var offset: UInt64
    public var holeSize: UInt32

    public init(offset: UInt64, holeSize: UInt32) {
        self.offset = offset
        self.holeSize = holeSize
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(offset)
        writer.append(holeSize)
    }

    public init(from reader: inout ByteReader) throws {
        offset = try reader.readU64("OFFSET_HOLE offset")
        holeSize = try reader.readU32("OFFSET_HOLE size")
        guard holeSize != 0 else {
            throw NBDProtocolError(.invalidValue, "OFFSET_HOLE chunk with hole size 0")
        }
    }
}
