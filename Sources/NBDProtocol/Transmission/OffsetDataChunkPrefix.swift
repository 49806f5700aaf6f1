/// The fixed start of an `NBD_REPLY_TYPE_OFFSET_DATA` chunk payload; the data follows.
///
/// ```
/// chunk payload, server → client (length ≥ 9)
///  0  u64 offset of the data
///  8  data[chunk length − 8]   (≥ 1 byte)
/// ```
public struct OffsetDataChunkPrefix: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 8

    public var offset: UInt64

    public init(offset: UInt64) { self.offset = offset }

    public func encode(into writer: inout ByteWriter) {
        writer.append(offset)
    }

    public init(from reader: inout ByteReader) throws {
        offset = try reader.readU64("OFFSET_DATA offset")
    }

    /// Data bytes in a chunk of `chunkLength` bytes; throws when the chunk carries no data.
    public static func dataLength(chunkLength: UInt64) throws -> UInt64 {
        guard chunkLength > UInt64(wireSize) else {
            throw NBDProtocolError(.invalidValue, "OFFSET_DATA chunk of \(chunkLength) bytes carries no data (need ≥ 9)")
        }
        return chunkLength - UInt64(wireSize)
    }
}
