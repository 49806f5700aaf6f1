/// The obsolete oldstyle greeting: the whole negotiation in one message, then transmission.
///
/// ```
/// 152 bytes, server → client
///   0  u64 NBDMAGIC        0x4e42444d41474943
///   8  u64 cliserv magic   0x00420281861253
///  16  u64 export size
///  24  u32 flags           transmission flags in the low 16 bits; high 16 bits must be 0
///  28  124 bytes of zeroes
/// ```
/// We never serve oldstyle; the client uses the decoder to recognise (and, when TLS is
/// required, refuse) such servers. Flag words with high bits set are rejected, like QEMU does.
public struct OldstyleGreeting: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 152

    public var exportSize: UInt64
    public var transmissionFlags: TransmissionFlags

    public init(exportSize: UInt64, transmissionFlags: TransmissionFlags) {
        self.exportSize = exportSize
        self.transmissionFlags = transmissionFlags
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.nbdMagic)
        writer.append(NBDMagic.oldstyleCliserv)
        writer.append(exportSize)
        writer.append(UInt32(transmissionFlags.rawValue))
        writer.appendZeroes(count: 124)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.nbdMagic, "greeting NBDMAGIC")
        try reader.expectMagic(NBDMagic.oldstyleCliserv, "oldstyle cliserv magic")
        exportSize = try reader.readU64("oldstyle export size")
        let flags = try reader.readU32("oldstyle flags")
        guard flags <= UInt32(UInt16.max) else {
            throw NBDProtocolError(.invalidValue, "oldstyle flags 0x\(String(flags, radix: 16)) have bits above 0xffff")
        }
        transmissionFlags = TransmissionFlags(rawValue: UInt16(flags))
        try reader.skip(124, "oldstyle zero padding")
    }
}

/// What a client finds after the first 16 bytes of a server greeting.
public enum GreetingStyle: Hashable, Sendable {
    /// IHAVEOPT follows NBDMAGIC: read 2 more bytes (`NewstyleGreeting`).
    case newstyle
    /// cliserv magic follows NBDMAGIC: read 136 more bytes (`OldstyleGreeting`).
    case oldstyle

    /// Classifies the first 16 bytes of a greeting; throws `.badMagic` for anything else.
    public init(firstSixteenBytes bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        try reader.expectMagic(NBDMagic.nbdMagic, "greeting NBDMAGIC")
        let second = try reader.readU64("greeting second magic")
        try reader.expectEnd("greeting prefix")
        switch second {
        case NBDMagic.ihaveopt: self = .newstyle
        case NBDMagic.oldstyleCliserv: self = .oldstyle
        default:
            throw NBDProtocolError(.badMagic, "greeting second magic 0x\(String(second, radix: 16)) is neither IHAVEOPT nor cliserv")
        }
    }

    /// Total greeting size for this style.
    public var wireSize: Int {
        switch self {
        case .newstyle: NewstyleGreeting.wireSize
        case .oldstyle: OldstyleGreeting.wireSize
        }
    }
}
