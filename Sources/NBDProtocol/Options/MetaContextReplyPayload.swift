/// Data of `NBD_REP_META_CONTEXT`.
///
/// ```
/// server → client
///  0  u32 context id   (meaningless in LIST replies: 0)
///  4  context name[rest]
/// ```
public struct MetaContextReplyPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var contextID: UInt32
    public var name: String

    public init(contextID: UInt32, name: String) {
        self.contextID = contextID
        self.name = name
    }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(name, what: "meta context name")
        writer.append(contextID)
        writer.append(string: name)
    }

    public init(from reader: inout ByteReader) throws {
        contextID = try reader.readU32("meta context id")
        name = try reader.readRemainingString("meta context name")
    }
}
