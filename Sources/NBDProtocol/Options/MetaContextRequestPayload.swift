/// Data of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT` (identical formats).
///
/// ```
/// client → server
///  0      u32 export name length N   (≤ 4096)
///  4      export name[N]
///  4+N    u32 number of queries Q
///  8+N    Q × { u32 query length L (≤ 4096), query[L] }   ("namespace:leaf")
/// the queries must end exactly at the option length
/// ```
/// Q comes from the wire: each query needs at least 4 bytes, so Q is checked against the
/// remaining bytes before any storage is reserved.
public struct MetaContextRequestPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var exportName: String
    public var queries: [String]

    public init(exportName: String, queries: [String] = []) {
        self.exportName = exportName
        self.queries = queries
    }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(exportName, what: "export name")
        guard let count = UInt32(exactly: queries.count) else {
            throw NBDProtocolError(.tooManyItems, "\(queries.count) queries do not fit a u32 count")
        }
        writer.append(UInt32(exportName.utf8.count))
        writer.append(string: exportName)
        writer.append(count)
        for query in queries {
            try NBDString.checkEncodable(query, what: "meta context query")
            writer.append(UInt32(query.utf8.count))
            writer.append(string: query)
        }
    }

    public init(from reader: inout ByteReader) throws {
        let nameLength = try reader.readU32("meta context export name length")
        exportName = try reader.readString(length: nameLength, "meta context export name")
        let count = try reader.readU32("meta context query count")
        guard UInt64(count) * 4 <= UInt64(reader.remaining) else {
            throw NBDProtocolError(.lengthMismatch, "\(count) meta context queries cannot fit in \(reader.remaining) bytes")
        }
        var result: [String] = []
        result.reserveCapacity(Int(count))
        for index in 0 ..< count {
            let length = try reader.readU32("meta context query \(index) length")
            result.append(try reader.readString(length: length, "meta context query \(index)"))
        }
        queries = result
    }
}
