import Testing
@testable import NBDProtocol

@Suite("Option codecs")
struct OptionCodecTests {
    @Test("the option header is 16 bytes and decodes byte by byte")
    func optionHeader() throws {
        let header = OptionHeader(option: .go, length: 0x1234)
        let bytes = header.bytes
        #expect(bytes == utf8("IHAVEOPT") + be(UInt32(7)) + be(UInt32(0x1234)))
        #expect(try decodeBytewise(bytes) { try OptionHeader(decoding: $0) } == header)
        #expect(protocolErrorCode { _ = try OptionHeader(decoding: utf8("IHAVEOPS") + be(UInt64(0))) } == .badMagic)
    }

    @Test("unknown option numbers decode so the server can answer ERR_UNSUP")
    func unknownOption() throws {
        let header = try OptionHeader(decoding: utf8("IHAVEOPT") + be(UInt32(0xdead)) + be(UInt32(0)))
        #expect(header.option == NBDOption(rawValue: 0xdead))
    }

    @Test("an INFO/GO request round-trips and decodes byte by byte")
    func infoRequest() throws {
        let request = InfoRequestPayload(exportName: "disk", requestedInfo: [.name, .blockSize, NBDInfoType(rawValue: 77)])
        let bytes = try request.encoded()
        #expect(bytes == be(UInt32(4)) + utf8("disk") + be(UInt16(3)) + be(UInt16(1)) + be(UInt16(3)) + be(UInt16(77)))
        #expect(try decodeBytewise(bytes) { try InfoRequestPayload(decoding: $0) } == request)
    }

    @Test("INFO/GO name lengths of 0xffffffff and 0xfffffffe are rejected without allocating")
    func infoHugeNameLength() {
        for length: UInt32 in [0xffff_ffff, 0xffff_fffe, 4097] {
            let bytes = be(length) + utf8("disk") + be(UInt16(0))
            #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: bytes) } == .stringTooLong)
        }
    }

    @Test("an INFO/GO name length beyond the option data is rejected")
    func infoInnerLengthTooLong() {
        let bytes = be(UInt32(100)) + utf8("disk") + be(UInt16(0))
        #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: bytes) } == .lengthMismatch)
    }

    @Test("INFO/GO with trailing bytes or a short info list is rejected")
    func infoExactLength() {
        let trailing = be(UInt32(1)) + utf8("a") + be(UInt16(1)) + be(UInt16(3)) + [0]
        #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: trailing) } == .lengthMismatch)
        let short = be(UInt32(1)) + utf8("a") + be(UInt16(2)) + be(UInt16(3))
        #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: short) } == .lengthMismatch)
    }

    @Test("INFO/GO names with an embedded NUL or longer than 4096 bytes are rejected")
    func infoBadNames() {
        let nul = be(UInt32(3)) + [0x61, 0, 0x62] + be(UInt16(0))
        #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: nul) } == .embeddedNUL)
        let long = be(UInt32(4097)) + Array(repeating: 0x61, count: 4097) + be(UInt16(0))
        #expect(protocolErrorCode { _ = try InfoRequestPayload(decoding: long) } == .stringTooLong)
        let max = be(UInt32(4096)) + Array(repeating: 0x61, count: 4096) + be(UInt16(0))
        #expect((try? InfoRequestPayload(decoding: max))?.exportName.utf8.count == 4096)
    }

    @Test("a meta-context request round-trips and decodes byte by byte")
    func metaContextRequest() throws {
        let request = MetaContextRequestPayload(exportName: "", queries: ["base:allocation", "qemu:"])
        let bytes = try request.encoded()
        #expect(try decodeBytewise(bytes) { try MetaContextRequestPayload(decoding: $0) } == request)
    }

    @Test("a meta-context query count larger than the data is rejected before allocating")
    func metaContextHugeCount() {
        let bytes = be(UInt32(0)) + be(UInt32(0xffff_ffff)) + be(UInt32(0))
        #expect(protocolErrorCode { _ = try MetaContextRequestPayload(decoding: bytes) } == .lengthMismatch)
        let queryTooLong = be(UInt32(0)) + be(UInt32(1)) + be(UInt32(0xffff_fffe)) + utf8("base:")
        #expect(protocolErrorCode { _ = try MetaContextRequestPayload(decoding: queryTooLong) } == .stringTooLong)
        let trailing = be(UInt32(0)) + be(UInt32(0)) + [1]
        #expect(protocolErrorCode { _ = try MetaContextRequestPayload(decoding: trailing) } == .trailingBytes)
    }

    @Test("the EXPORT_NAME option data is the whole name")
    func exportNameOption() throws {
        #expect(try ExportNameOptionPayload(decoding: utf8("vm1")).exportName == "vm1")
        #expect(try ExportNameOptionPayload(decoding: []).exportName == "")
        #expect(protocolErrorCode { _ = try ExportNameOptionPayload(decoding: [0x61, 0]) } == .embeddedNUL)
        #expect(protocolErrorCode { _ = try ExportNameOptionPayload(decoding: Array(repeating: 0x61, count: 4097)) } == .stringTooLong)
    }

    @Test("the option reply header is 20 bytes and decodes byte by byte")
    func optionReplyHeader() throws {
        let reply = OptionReply.ack(.startTLS)
        #expect(reply.bytes == be(NBDMagic.optionReply) + be(UInt32(5)) + be(UInt32(1)) + be(UInt32(0)))
        let header = try decodeBytewise(reply.bytes) { try OptionReplyHeader(decoding: $0) }
        #expect(header == OptionReplyHeader(option: .startTLS, replyType: .ack, length: 0))
    }

    @Test("option error messages are cut below 256 bytes")
    func errorMessageCap() {
        let reply = OptionReply.error(.errUnknown, for: .go, message: String(repeating: "x", count: 5000))
        #expect(reply.payload.count == 255)
        #expect(reply.bytes.count == 275)
    }

    @Test("SERVER, META_CONTEXT and INFO reply payloads round-trip")
    func replyPayloads() throws {
        let server = ServerReplyPayload(exportName: "a", description: "desc")
        #expect(try server.encoded() == be(UInt32(1)) + utf8("a") + utf8("desc"))
        #expect(try decodeEveryPrefix(try server.encoded()) { try ServerReplyPayload(decoding: $0) } == server)
        let meta = MetaContextReplyPayload(contextID: 7, name: "base:allocation")
        #expect(try decodeEveryPrefix(try meta.encoded()) { try MetaContextReplyPayload(decoding: $0) } == meta)
        let infos: [InfoReplyPayload] = [
            .export(size: 1 << 40, flags: [.hasFlags, .sendFlush]), .name("x"), .description("d"),
            .blockSize(NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 1 << 25)),
            .unknown(type: NBDInfoType(rawValue: 42), data: [1, 2]),
        ]
        for info in infos {
            #expect(try InfoReplyPayload(decoding: try info.encoded()) == info)
        }
        #expect(try InfoReplyPayload.export(size: 1, flags: .hasFlags).encoded().count == 12)
        #expect(try InfoReplyPayload.blockSize(.serverDefault).encoded().count == 14)
    }

    @Test("INFO replies of the wrong exact length are rejected")
    func infoReplyLengths() {
        #expect(protocolErrorCode { _ = try InfoReplyPayload(decoding: be(UInt16(0)) + be(UInt64(1))) } == .lengthMismatch)
        #expect(protocolErrorCode { _ = try InfoReplyPayload(decoding: be(UInt16(3)) + be(UInt64(1)) + be(UInt64(1))) } == .lengthMismatch)
        #expect(protocolErrorCode { _ = try ServerReplyPayload(decoding: be(UInt32(9)) + utf8("a")) } == .lengthMismatch)
    }

    @Test("the EXPORT_NAME reply is 134 bytes, or 10 with NO_ZEROES")
    func exportNameReply() throws {
        let padded = ExportNameReply(exportSize: 4096, transmissionFlags: .hasFlags, includesZeroPadding: true)
        let short = ExportNameReply(exportSize: 4096, transmissionFlags: .hasFlags, includesZeroPadding: false)
        #expect(padded.bytes.count == 134)
        #expect(short.bytes.count == 10)
        #expect(try ExportNameReply(decoding: padded.bytes, includesZeroPadding: true) == padded)
        #expect(try ExportNameReply(decoding: short.bytes, includesZeroPadding: false) == short)
        #expect(protocolErrorCode { _ = try ExportNameReply(decoding: padded.bytes, includesZeroPadding: false) } == .trailingBytes)
    }

    @Test("block sizes are checked for the spec relations")
    func blockSizes() {
        #expect(NBDBlockSizes.serverDefault.validationProblem == nil)
        #expect(NBDBlockSizes(minimum: 3, preferred: 4096, maximumPayload: 4096).validationProblem != nil)
        #expect(NBDBlockSizes(minimum: 1 << 17, preferred: 1 << 17, maximumPayload: 1 << 20).validationProblem != nil)
        #expect(NBDBlockSizes(minimum: 512, preferred: 256, maximumPayload: 4096).validationProblem != nil)
        #expect(NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 0xffff_ffff).validationProblem == nil)
    }
}

@Suite("Option codecs: more malformed input")
struct OptionCodecMalformedTests {
    @Test("a meta-context query length beyond the option data is rejected")
    func queryRunsPast() {
        let bytes = be(UInt32(0)) + be(UInt32(1)) + be(UInt32(100)) + utf8("base:allocation")
        #expect(protocolErrorCode { _ = try MetaContextRequestPayload(decoding: bytes) } == .lengthMismatch)
        let nul = be(UInt32(0)) + be(UInt32(1)) + be(UInt32(3)) + [0x62, 0, 0x3a]
        #expect(protocolErrorCode { _ = try MetaContextRequestPayload(decoding: nul) } == .embeddedNUL)
    }

    @Test("error messages decode leniently but not beyond 4096 bytes")
    func errorMessages() throws {
        #expect(try OptionErrorMessage(decoding: [0x6f, 0x6b, 0xff]).message.hasPrefix("ok"))
        #expect(protocolErrorCode { _ = try OptionErrorMessage(decoding: Array(repeating: 0x61, count: 4097)) } == .stringTooLong)
    }

    @Test("the EXPORT_NAME reply decodes byte by byte in both sizes")
    func exportNameReplyBytewise() throws {
        let reply = ExportNameReply(exportSize: 1 << 40, transmissionFlags: [.hasFlags, .readOnly], includesZeroPadding: true)
        #expect(try decodeBytewise(reply.bytes) { try ExportNameReply(decoding: $0, includesZeroPadding: true) } == reply)
        var short = reply
        short.includesZeroPadding = false
        #expect(try decodeBytewise(short.bytes) { try ExportNameReply(decoding: $0, includesZeroPadding: false) } == short)
    }

    @Test("encoders refuse names they could not legally send")
    func encoderChecks() {
        #expect(protocolErrorCode { _ = try InfoRequestPayload(exportName: "a\0b").encoded() } == .embeddedNUL)
        #expect(protocolErrorCode { _ = try ServerReplyPayload(exportName: String(repeating: "x", count: 4097)).encoded() } == .stringTooLong)
        #expect(protocolErrorCode { _ = try ErrorChunkPayload(error: .success).encoded() } == .invalidValue)
    }
}
