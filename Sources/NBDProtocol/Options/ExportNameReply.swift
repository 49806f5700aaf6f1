/// The server's answer to a successful `NBD_OPT_EXPORT_NAME` (there is no error form: failure closes).
///
/// ```
/// 134 bytes (or 10 when both sides set NO_ZEROES), server → client
///  0  u64 export size
///  8  u16 transmission flags
/// 10  124 bytes of zeroes     omitted iff the server offered NO_ZEROES and the client set C_NO_ZEROES
/// ```
public struct ExportNameReply: NBDWireEncodable, Hashable, Sendable {
    public static let paddedWireSize = 134
    public static let unpaddedWireSize = 10

    public var exportSize: UInt64
    public var transmissionFlags: TransmissionFlags
    public var includesZeroPadding: Bool

    public init(exportSize: UInt64, transmissionFlags: TransmissionFlags, includesZeroPadding: Bool) {
        self.exportSize = exportSize
        self.transmissionFlags = transmissionFlags
        self.includesZeroPadding = includesZeroPadding
    }

    /// The size to read for a given padding choice.
    public static func wireSize(includesZeroPadding: Bool) -> Int {
        includesZeroPadding ? paddedWireSize : unpaddedWireSize
    }

    public func encode(into writer: inout ByteWriter) {
        writer.append(exportSize)
        writer.append(transmissionFlags.rawValue)
        if includesZeroPadding { writer.appendZeroes(count: 124) }
    }

    public var bytes: [UInt8] {
        var writer = ByteWriter(capacity: Self.wireSize(includesZeroPadding: includesZeroPadding))
        encode(into: &writer)
        return writer.bytes
    }

    /// Parses exactly 10 or 134 bytes, as `includesZeroPadding` says.
    public init(decoding bytes: [UInt8], includesZeroPadding: Bool) throws {
        var reader = ByteReader(bytes)
        exportSize = try reader.readU64("EXPORT_NAME reply size")
        transmissionFlags = TransmissionFlags(rawValue: try reader.readU16("EXPORT_NAME reply flags"))
        if includesZeroPadding { try reader.skip(124, "EXPORT_NAME reply zero padding") }
        try reader.expectEnd("EXPORT_NAME reply")
        self.includesZeroPadding = includesZeroPadding
    }
}
