/// A transmission-phase request header in either wire form.
///
/// ```
/// compact, 28 bytes, client → server          extended, 32 bytes (extended headers only)
///  0  u32 0x25609513 magic                     0  u32 0x21e41c71 magic
///  4  u16 command flags                        4  u16 command flags
///  6  u16 type (NBD_CMD_*)                     6  u16 type
///  8  u64 cookie                               8  u64 cookie
/// 16  u64 offset                              16  u64 offset
/// 24  u32 length                              24  u64 length (payload length iff PAYLOAD_LEN,
///                                                             else effect length)
/// then `length` bytes of data for WRITE        then `length` bytes iff PAYLOAD_LEN
/// ```
/// The header decoders only parse; whether flags, lengths and payloads are acceptable is the
/// `RequestValidator`'s job.
public struct NBDRequest: Hashable, Sendable {
    /// Which of the two header layouts carries the request.
    public enum Form: Hashable, Sendable {
        case compact
        case extended

        public var wireSize: Int { self == .compact ? 28 : 32 }
        public var magic: UInt32 { self == .compact ? NBDMagic.request : NBDMagic.extendedRequest }
    }

    public static let compactWireSize = 28
    public static let extendedWireSize = 32

    public var flags: CommandFlags
    public var command: NBDCommand
    public var cookie: UInt64
    public var offset: UInt64
    /// Compact form: the 32-bit length. Extended form: payload length when `flags` has
    /// PAYLOAD_LEN, effect length otherwise.
    public var length: UInt64

    public init(command: NBDCommand, flags: CommandFlags = [], cookie: UInt64, offset: UInt64 = 0, length: UInt64 = 0) {
        self.command = command
        self.flags = flags
        self.cookie = cookie
        self.offset = offset
        self.length = length
    }

    /// Bytes of data that follow this header on the wire (what the engine must read or drain).
    ///
    /// Extended form: PAYLOAD_LEN announces a payload for any command. A WRITE without
    /// PAYLOAD_LEN still carries `length` bytes (the spec requires the flag; QEMU's server
    /// tolerates its absence and so do we, because the data is on the wire either way).
    public func payloadLength(form: Form) -> UInt64 {
        switch form {
        case .compact: command == .write ? length : 0
        case .extended: flags.contains(.payloadLength) || command == .write ? length : 0
        }
    }

    /// Encodes in `form`; a compact request cannot carry a length above 0xffffffff.
    public func encode(into writer: inout ByteWriter, form: Form) throws {
        writer.append(form.magic)
        writer.append(flags.rawValue)
        writer.append(command.rawValue)
        writer.append(cookie)
        writer.append(offset)
        switch form {
        case .compact:
            guard let short = UInt32(exactly: length) else {
                throw NBDProtocolError(.valueOutOfRange, "length \(length) does not fit a compact request; negotiate extended headers")
            }
            writer.append(short)
        case .extended:
            writer.append(length)
        }
    }

    public func encoded(form: Form) throws -> [UInt8] {
        var writer = ByteWriter(capacity: form.wireSize)
        try encode(into: &writer, form: form)
        return writer.bytes
    }

    /// Parses exactly `form.wireSize` bytes.
    public init(decoding bytes: [UInt8], form: Form) throws {
        var reader = ByteReader(bytes)
        try reader.expectMagic(form.magic, form == .compact ? "request magic" : "extended request magic")
        flags = CommandFlags(rawValue: try reader.readU16("request flags"))
        command = NBDCommand(rawValue: try reader.readU16("request type"))
        cookie = try reader.readU64("request cookie")
        offset = try reader.readU64("request offset")
        switch form {
        case .compact: length = UInt64(try reader.readU32("request length"))
        case .extended: length = try reader.readU64("request length")
        }
        try reader.expectEnd("request header")
    }
}
