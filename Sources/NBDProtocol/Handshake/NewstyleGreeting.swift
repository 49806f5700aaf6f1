/// The server's first message in (fixed) newstyle negotiation.
///
/// ```
/// 18 bytes, server → client
///  0  u64 NBDMAGIC  0x4e42444d41474943 ("NBDMAGIC")
///  8  u64 IHAVEOPT  0x49484156454F5054 ("IHAVEOPT")
/// 16  u16 handshake flags (FIXED_NEWSTYLE | NO_ZEROES)
/// ```
/// Decoding keeps unknown handshake bits (a client ignores them).
public struct NewstyleGreeting: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 18

    public var handshakeFlags: HandshakeFlags

    public init(handshakeFlags: HandshakeFlags = [.fixedNewstyle, .noZeroes]) {
        self.handshakeFlags = handshakeFlags
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.nbdMagic)
        writer.append(NBDMagic.ihaveopt)
        writer.append(handshakeFlags.rawValue)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.nbdMagic, "greeting NBDMAGIC")
        try reader.expectMagic(NBDMagic.ihaveopt, "newstyle greeting IHAVEOPT")
        handshakeFlags = HandshakeFlags(rawValue: try reader.readU16("handshake flags"))
    }
}
