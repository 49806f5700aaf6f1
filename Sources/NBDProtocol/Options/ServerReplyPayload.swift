/// Data of `NBD_REP_SERVER` (one per export in answer to LIST).
///
/// ```
/// server → client
///  0    u32 name length N   (N ≤ reply length − 4)
///  4    name[N]
///  4+N  description[rest]   display text, may be empty
/// ```
public struct ServerReplyPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var exportName: String
    public var description: String

    public init(exportName: String, description: String = "") {
        self.exportName = exportName
        self.description = description
    }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(exportName, what: "export name")
        try NBDString.checkEncodable(description, what: "export description")
        writer.append(UInt32(exportName.utf8.count))
        writer.append(string: exportName)
        writer.append(string: description)
    }

    public init(from reader: inout ByteReader) throws {
        let nameLength = try reader.readU32("SERVER name length")
        exportName = try reader.readString(length: nameLength, "SERVER export name")
        description = try reader.readRemainingString("SERVER description")
    }
}
