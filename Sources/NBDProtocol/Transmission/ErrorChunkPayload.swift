/// Payload of an error chunk: `NBD_REPLY_TYPE_ERROR` or, with an offset, `NBD_REPLY_TYPE_ERROR_OFFSET`.
///
/// ```
/// server → client
///  0      u32 error (≠ 0, NBD errno)
///  4      u16 message length M (≤ 4096)
///  6      message[M]
///  6+M    u64 offset              ERROR_OFFSET only
/// ```
/// Unknown error chunk types (bit 15 set) share the first three fields; `init(decoding:type:)`
/// accepts them with trailing data ignored so the client can fail just that request.
public struct ErrorChunkPayload: Hashable, Sendable {
    public var error: NBDErrno
    public var message: String
    /// Present for ERROR_OFFSET.
    public var offset: UInt64?

    public init(error: NBDErrno, message: String = "", offset: UInt64? = nil) {
        self.error = error
        self.message = message
        self.offset = offset
    }

    public var chunkType: NBDChunkType { offset == nil ? .error : .errorOffset }

    public func encode(into writer: inout ByteWriter) throws {
        guard error != .success else {
            throw NBDProtocolError(.invalidValue, "an error chunk cannot carry error 0")
        }
        try NBDString.checkEncodable(message, what: "error chunk message")
        writer.append(error.rawValue)
        writer.append(UInt16(message.utf8.count))
        writer.append(string: message)
        if let offset { writer.append(offset) }
    }

    public func encoded() throws -> [UInt8] {
        var writer = ByteWriter(capacity: 14 + message.utf8.count)
        try encode(into: &writer)
        return writer.bytes
    }

    /// Parses an error chunk payload of the given `type` (which must have bit 15 set).
    public init(decoding bytes: [UInt8], type: NBDChunkType) throws {
        guard type.isError else {
            throw NBDProtocolError(.invalidValue, "\(type) is not an error chunk type")
        }
        var reader = ByteReader(bytes)
        error = NBDErrno(rawValue: try reader.readU32("error chunk error"))
        guard error != .success else {
            throw NBDProtocolError(.invalidValue, "error chunk carries error 0")
        }
        let length = try reader.readU16("error chunk message length")
        guard Int(length) <= reader.remaining else {
            throw NBDProtocolError(.lengthMismatch, "error message length \(length) runs past the \(reader.remaining) remaining bytes")
        }
        guard Int(length) <= NBDWireLimits.maximumStringLength else {
            throw NBDProtocolError(.stringTooLong, "error message is \(length) bytes, limit is 4096")
        }
        message = NBDString.lenientMessage(try reader.readBytes(count: Int(length), "error chunk message"))
        switch type {
        case .error:
            offset = nil
            try reader.expectEnd("ERROR chunk")
        case .errorOffset:
            offset = try reader.readU64("ERROR_OFFSET offset")
            try reader.expectEnd("ERROR_OFFSET chunk")
        default:
            offset = nil // unknown error type: the rest is opaque
        }
    }
}
