/// The client's answer to the newstyle greeting.
///
/// ```
/// 4 bytes, client → server
///  0  u32 client flags (C_FIXED_NEWSTYLE | C_NO_ZEROES)
/// ```
/// Decoding keeps unknown bits: whether they are acceptable is the negotiation's decision.
extension ClientFlags: NBDFixedSizeWireMessage {
    public static let wireSize = 4

    public func encode(into writer: inout ByteWriter) {
        writer.append(rawValue)
    }

    public init(from reader: inout ByteReader) throws {
        self.init(rawValue: try reader.readU32("client flags"))
    }
}
