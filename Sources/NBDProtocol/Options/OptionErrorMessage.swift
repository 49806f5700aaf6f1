/// Data of an error option reply (any reply type with bit 31 set).
///
/// ```
/// server → client
///  0  message[length]   optional human-readable UTF-8 text, ≤ 4096 bytes
/// ```
/// Decoding is lenient about UTF-8 (the text is only shown to humans) but enforces the size cap.
public struct OptionErrorMessage: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var message: String

    public init(message: String) { self.message = message }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(message, what: "error message")
        writer.append(string: message)
    }

    public init(from reader: inout ByteReader) throws {
        guard reader.remaining <= NBDWireLimits.maximumStringLength else {
            throw NBDProtocolError(.stringTooLong, "error message is \(reader.remaining) bytes, limit is 4096")
        }
        message = NBDString.lenientMessage(reader.readRemainingBytes())
    }
}
