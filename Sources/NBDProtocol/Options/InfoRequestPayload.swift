/// Data of `NBD_OPT_INFO` and `NBD_OPT_GO` (identical formats).
///
/// ```
/// client → server
///  0        u32 name length N      (N ≤ option length − 6, ≤ 4096)
///  4        name[N]
///  4+N      u16 number of info requests K
///  6+N      u16 info[K]            (NBD_INFO_*)
/// total length must be exactly 4 + N + 2 + 2K
/// ```
/// Every length is checked against the bytes that remain (never `4 + N > length`, which can
/// wrap), so 0xffffffff-style lengths are rejected before anything is allocated
/// (CVE-2022-26495/26496 class). Unknown info codes are kept; duplicates are kept in order.
public struct InfoRequestPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    public var exportName: String
    public var requestedInfo: [NBDInfoType]

    public init(exportName: String, requestedInfo: [NBDInfoType] = []) {
        self.exportName = exportName
        self.requestedInfo = requestedInfo
    }

    public func encode(into writer: inout ByteWriter) throws {
        try NBDString.checkEncodable(exportName, what: "export name")
        guard let count = UInt16(exactly: requestedInfo.count) else {
            throw NBDProtocolError(.tooManyItems, "\(requestedInfo.count) info requests do not fit a u16 count")
        }
        writer.append(UInt32(exportName.utf8.count))
        writer.append(string: exportName)
        writer.append(count)
        for info in requestedInfo { writer.append(info.rawValue) }
    }

    public init(from reader: inout ByteReader) throws {
        let nameLength = try reader.readU32("INFO/GO name length")
        exportName = try reader.readString(length: nameLength, "INFO/GO export name")
        let count = try reader.readU16("INFO/GO info request count")
        guard Int(count) * 2 == reader.remaining else {
            throw NBDProtocolError(.lengthMismatch,
                                   "INFO/GO lists \(count) info requests but \(reader.remaining) bytes remain (need \(Int(count) * 2))")
        }
        var infos: [NBDInfoType] = []
        infos.reserveCapacity(Int(count))
        for _ in 0 ..< count {
            infos.append(NBDInfoType(rawValue: try reader.readU16("info request")))
        }
        requestedInfo = infos
    }
}
