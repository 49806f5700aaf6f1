/// Data of `NBD_OPT_EXPORT_NAME`.
///
/// ```
/// option length bytes, client → server
///  0  name[length]   the whole option data; no length prefix; empty = default export
/// ```
public struct ExportNameOptionPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var exportName: String

    public init(exportName: String) { self.exportName = exportName }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(exportName, what: "export name")
        writer.append(string: exportName)
    }

    public init(from reader: inout ByteReader) throws {
        exportName = try reader.readRemainingString("export name")
    }
}
