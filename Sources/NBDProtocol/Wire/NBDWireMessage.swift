/// A message or payload that can be written to the wire.
public protocol NBDWireEncodable {
    /// Appends the wire form. Encoders that can meet an unrepresentable value throw
    /// `NBDProtocolError(.valueOutOfRange)` (or a string error) instead of trapping.
    func encode(into writer: inout ByteWriter) throws
}

extension NBDWireEncodable {
    /// The wire bytes of this message.
    public func encoded() throws -> [UInt8] {
        var writer = ByteWriter()
        try encode(into: &writer)
        return writer.bytes
    }
}

/// A message or payload that can be parsed from exactly the bytes it occupies.
public protocol NBDWireDecodable {
    /// Parses from the reader's current position; may leave bytes unread.
    init(from reader: inout ByteReader) throws
}

extension NBDWireDecodable {
    /// Parses `bytes`, which must be exactly this message: missing bytes throw `.truncated`,
    /// extra bytes throw `.trailingBytes`.
    public init(decoding bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        try self.init(from: &reader)
        try reader.expectEnd(String(describing: Self.self))
    }
}

/// A fixed-size header: the engine reads exactly `wireSize` bytes, then decodes them.
public protocol NBDFixedSizeWireMessage: NBDWireEncodable, NBDWireDecodable {
    static var wireSize: Int { get }
}

extension NBDFixedSizeWireMessage {
    /// Non-throwing encoding for headers whose fields always fit.
    public var bytes: [UInt8] {
        var writer = ByteWriter(capacity: Self.wireSize)
        try? encode(into: &writer)
        return writer.bytes
    }
}
