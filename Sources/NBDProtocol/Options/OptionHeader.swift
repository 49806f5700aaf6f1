/// The fixed part of every client option.
///
/// ```
/// 16 bytes, client → server, followed by `length` bytes of option data
///  0  u64 IHAVEOPT  0x49484156454F5054
///  8  u32 option    (NBD_OPT_*)
/// 12  u32 length of option data
/// ```
/// The server must decide whether to read `length` bytes before allocating anything for them.
public struct OptionHeader: NBDFixedSizeWireMessage, Hashable, Sendable {
    public static let wireSize = 16

    public var option: NBDOption
    public var length: UInt32

    public init(option: NBDOption, length: UInt32) {
        self.option = option
        self.length = length
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(NBDMagic.ihaveopt)
        writer.append(option.rawValue)
        writer.append(length)
    }

    public init(from reader: inout ByteReader) throws {
        try reader.expectMagic(NBDMagic.ihaveopt, "option header IHAVEOPT")
        option = NBDOption(rawValue: try reader.readU32("option number"))
        length = try reader.readU32("option length")
    }
}

/// A whole client option (header + data), as a client sends it.
public struct OptionRequest: NBDWireEncodable, Hashable, Sendable {
    public var option: NBDOption
    public var payload: [UInt8]

    public init(option: NBDOption, payload: [UInt8] = []) {
        self.option = option
        self.payload = payload
    }

    public func encode(into writer: inout ByteWriter) throws {
        guard let length = UInt32(exactly: payload.count) else {
            throw NBDProtocolError(.valueOutOfRange, "option data of \(payload.count) bytes does not fit a u32 length")
        }
        OptionHeader(option: option, length: length).encode(into: &writer)
        writer.append(bytes: payload)
    }
}
