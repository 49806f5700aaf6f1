/// The fixed part of every option reply (all options except EXPORT_NAME).
///
/// ```
/// 20 bytes, server → client, followed by `length` bytes of reply data
///  0  u64 NBD_REP_MAGIC  0x0003e889045565a9
///  8  u32 option         (echo of the request)
/// 12  u32 reply type     (NBD_REP_*)
/// 16  u32 length of reply data
/// ```
public struct OptionReplyHeader: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 20

    public var option: NBDOption
    public var replyType: NBDReplyType
    public var length: UInt32

    public init(option: NBDOption, replyType: NBDReplyType, length: UInt32) {
        self.option = option
        self.replyType = replyType
        self.length = length
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.optionReply)
        writer.append(option.rawValue)
        writer.append(replyType.rawValue)
        writer.append(length)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.optionReply, "option reply magic")
        option = NBDOption(rawValue: try reader.readU32("option reply option"))
        replyType = NBDReplyType(rawValue: try reader.readU32("option reply type"))
        length = try reader.readU32("option reply length")
    }
}

/// A whole option reply (header + data), ready to send.
public struct OptionReply: NBDWireEncodable, Hashable, Sendable {
    public var option: NBDOption
    public var replyType: NBDReplyType
    public var payload: [UInt8]

    public init(option: NBDOption, replyType: NBDReplyType, payload: [UInt8] = []) {
        self.option = option
        self.replyType = replyType
        self.payload = payload
    }

    /// `NBD_REP_ACK` with no data.
    public static func ack(_ option: NBDOption) -> OptionReply {
        OptionReply(option: option, replyType: .ack)
    }

    /// An error reply whose data is a short message (cut to 255 bytes on a character boundary).
    public static func error(_ type: NBDReplyType, for option: NBDOption, message: String) -> OptionReply {
        let text = NBDString.truncatedMessage(message)
        return OptionReply(option: option, replyType: type, payload: Array(text.utf8))
    }

    /// A reply carrying an encoded payload (SERVER, INFO, META_CONTEXT).
    public static func with(_ type: NBDReplyType, for option: NBDOption, payload: some NBDWireEncodable) throws -> OptionReply {
        OptionReply(option: option, replyType: type, payload: try payload.encoded())
    }

    public func encode(into writer: inout ByteWriter) throws {
        guard let length = UInt32(exactly: payload.count) else {
            throw NBDProtocolError(.valueOutOfRange, "option reply data of \(payload.count) bytes does not fit a u32 length")
        }
        OptionReplyHeader(option: option, replyType: replyType, length: length).encode(into: &writer)
        writer.append(bytes: payload)
    }

    /// Wire bytes; option replies we build always fit, so this does not throw.
    public var bytes: [UInt8] {
        var writer = ByteWriter(capacity: OptionReplyHeader.wireSize + payload.count)
        try? encode(into: &writer)
        return writer.bytes
    }
}
