/// Data of `NBD_REP_INFO`: a u16 info type, then type-specific data.
///
/// ```
/// server → client
///  0  u16 info type
///  EXPORT (0)       2  u64 export size, 10  u16 transmission flags     (exactly 12 bytes)
///  NAME (1)         2  name[rest]                                      (≥ 2 bytes)
///  DESCRIPTION (2)  2  description[rest]                               (≥ 2 bytes)
///  BLOCK_SIZE (3)   2  u32 minimum, 6  u32 preferred, 10  u32 maximum payload (exactly 14 bytes)
///  other            2  opaque data, kept so clients can ignore it
/// ```
public enum InfoReplyPayload: NBDWireEncodable, NBDWireDecodable, Hashable, Sendable {
    case export(size: UInt64, flags: TransmissionFlags)
    case name(String)
    case description(String)
    case blockSize(NBDBlockSizes)
    case unknown(type: NBDInfoType, data: [UInt8])

    public var infoType: NBDInfoType {
        switch self {
        case .export: .export
        case .name: .name
        case .description: .description
        case .blockSize: .blockSize
        case .unknown(let type, _): type
        }
    }

    public func encode(into writer: inout ByteWriter) throws {
        writer.append(infoType.rawValue)
        switch self {
        case .export(let size, let flags):
            writer.append(size)
            writer.append(flags.rawValue)
        case .name(let name):
            try NBDString.checkEncodable(name, what: "export name")
            writer.append(string: name)
        case .description(let text):
            try NBDString.checkEncodable(text, what: "export description")
            writer.append(string: text)
        case .blockSize(let sizes):
            writer.append(sizes.minimum)
            writer.append(sizes.preferred)
            writer.append(sizes.maximumPayload)
        case .unknown(_, let data):
            writer.append(bytes: data)
        }
    }

    /// Parses the whole reply data (the reader must hold exactly it: the type decides the length).
    public init(from reader: inout ByteReader) throws {
        let type = NBDInfoType(rawValue: try reader.readU16("info type"))
        switch type {
        case .export:
            guard reader.remaining == 10 else {
                throw NBDProtocolError(.lengthMismatch, "NBD_INFO_EXPORT must be 12 bytes, got \(reader.remaining + 2)")
            }
            self = .export(size: try reader.readU64("export size"),
                           flags: TransmissionFlags(rawValue: try reader.readU16("transmission flags")))
        case .name:
            self = .name(try reader.readRemainingString("NBD_INFO_NAME"))
        case .description:
            self = .description(try reader.readRemainingString("NBD_INFO_DESCRIPTION"))
        case .blockSize:
            guard reader.remaining == 12 else {
                throw NBDProtocolError(.lengthMismatch, "NBD_INFO_BLOCK_SIZE must be 14 bytes, got \(reader.remaining + 2)")
            }
            self = .blockSize(NBDBlockSizes(minimum: try reader.readU32("minimum block size"),
                                            preferred: try reader.readU32("preferred block size"),
                                            maximumPayload: try reader.readU32("maximum payload")))
        default:
            self = .unknown(type: type, data: reader.readRemainingBytes())
        }
    }
}
