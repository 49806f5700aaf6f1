import Testing
@testable import NBDProtocol

@Suite("Transmission codecs")
struct TransmissionCodecTests {
    @Test("a compact request is 28 bytes and decodes byte by byte")
    func compactRequest() throws {
        let request = NBDRequest(command: .write, flags: .fua, cookie: 0xabc, offset: 4096, length: 512)
        let bytes = try request.encoded(form: .compact)
        #expect(bytes == be(NBDMagic.request) + be(UInt16(1)) + be(UInt16(1)) + be(UInt64(0xabc)) + be(UInt64(4096)) + be(UInt32(512)))
        #expect(try decodeBytewise(bytes) { try NBDRequest(decoding: $0, form: .compact) } == request)
        #expect(request.payloadLength(form: .compact) == 512)
    }

    @Test("an extended request is 32 bytes and carries 64-bit lengths")
    func extendedRequest() throws {
        let request = NBDRequest(command: .trim, cookie: 1, offset: 0, length: 1 << 40)
        let bytes = try request.encoded(form: .extended)
        #expect(bytes.count == 32)
        #expect(try decodeBytewise(bytes) { try NBDRequest(decoding: $0, form: .extended) } == request)
        #expect(request.payloadLength(form: .extended) == 0)
        #expect(protocolErrorCode { _ = try request.encoded(form: .compact) } == .valueOutOfRange)
    }

    @Test("a request with the wrong magic for its form is rejected")
    func requestMagic() throws {
        let bytes = try NBDRequest(command: .read, cookie: 1, length: 1).encoded(form: .compact)
        #expect(protocolErrorCode { _ = try NBDRequest(decoding: bytes + [0, 0, 0, 0], form: .extended) } == .badMagic)
        #expect(protocolErrorCode { _ = try NBDRequest(decoding: bytes + [0], form: .compact) } == .trailingBytes)
    }

    @Test("unknown commands and flags survive decoding for the validator to judge")
    func unknownCommand() throws {
        let bytes = be(NBDMagic.request) + be(UInt16(0x8000)) + be(UInt16(99)) + be(UInt64(5)) + be(UInt64(0)) + be(UInt32(0))
        let request = try NBDRequest(decoding: bytes, form: .compact)
        #expect(request.command == NBDCommand(rawValue: 99))
        #expect(request.flags.rawValue == 0x8000)
    }

    @Test("simple, structured and extended reply headers round-trip")
    func replyHeaders() throws {
        let simple = SimpleReplyHeader(error: .EIO, cookie: 9)
        #expect(simple.bytes.count == 16)
        #expect(try decodeBytewise(simple.bytes) { try SimpleReplyHeader(decoding: $0) } == simple)
        let structured = StructuredChunkHeader(flags: .done, type: .offsetHole, cookie: 9, length: 12)
        #expect(structured.bytes.count == 20)
        #expect(try decodeBytewise(structured.bytes) { try StructuredChunkHeader(decoding: $0) } == structured)
        let extended = ExtendedChunkHeader(flags: [], type: .blockStatusExtended, cookie: 9, offset: 1 << 33, length: 24)
        #expect(extended.bytes.count == 32)
        #expect(try decodeBytewise(extended.bytes) { try ExtendedChunkHeader(decoding: $0) } == extended)
        #expect(try ReplyMagic(firstFourBytes: Array(extended.bytes[0 ..< 4])) == .extended)
        #expect(protocolErrorCode { _ = try ReplyMagic(firstFourBytes: [1, 2, 3, 4]) } == .badMagic)
    }

    @Test("OFFSET_HOLE is 12 bytes and a zero-size hole is rejected")
    func offsetHole() throws {
        let hole = OffsetHoleChunkPayload(offset: 512, holeSize: 1024)
        #expect(try decodeBytewise(hole.bytes) { try OffsetHoleChunkPayload(decoding: $0) } == hole)
        #expect(protocolErrorCode { _ = try OffsetHoleChunkPayload(decoding: be(UInt64(0)) + be(UInt32(0))) } == .invalidValue)
        #expect(try OffsetDataChunkPrefix.dataLength(chunkLength: 9) == 1)
        #expect(protocolErrorCode { _ = try OffsetDataChunkPrefix.dataLength(chunkLength: 8) } == .invalidValue)
    }

    @Test("block-status payloads round-trip in both forms and reject inconsistent counts")
    func blockStatus() throws {
        let payload = BlockStatusChunkPayload(contextID: 1, extents: [
            BlockStatusExtent(length: 4096, allocation: [.hole, .zero]), BlockStatusExtent(length: 512, flags: 0),
        ])
        let compact = try payload.encoded(form: .compact)
        #expect(compact.count == 4 + 16)
        #expect(try decodeEveryPrefix(compact) { try BlockStatusChunkPayload(decoding: $0, form: .compact) } == payload)
        let extended = try payload.encoded(form: .extended)
        #expect(extended.count == 8 + 32)
        #expect(try decodeBytewise(extended) { try BlockStatusChunkPayload(decoding: $0, form: .extended) } == payload)
        let wrongCount = be(UInt32(1)) + be(UInt32(3)) + be(UInt64(1)) + be(UInt64(0))
        #expect(protocolErrorCode { _ = try BlockStatusChunkPayload(decoding: wrongCount, form: .extended) } == .lengthMismatch)
        let hugeCount = be(UInt32(1)) + be(UInt32(0xffff_ffff)) + be(UInt64(1)) + be(UInt64(0))
        #expect(protocolErrorCode { _ = try BlockStatusChunkPayload(decoding: hugeCount, form: .extended) } == .lengthMismatch)
        let zeroLength = be(UInt32(1)) + be(UInt32(0)) + be(UInt32(0))
        #expect(protocolErrorCode { _ = try BlockStatusChunkPayload(decoding: zeroLength, form: .compact) } == .invalidValue)
        let big = BlockStatusChunkPayload(contextID: 0, extents: [BlockStatusExtent(length: 1 << 32, flags: 0)])
        #expect(protocolErrorCode { _ = try big.encoded(form: .compact) } == .valueOutOfRange)
    }

    @Test("error chunks round-trip and reject error 0 or overlong messages")
    func errorChunks() throws {
        let plain = ErrorChunkPayload(error: .EIO, message: "disk failed")
        #expect(try ErrorChunkPayload(decoding: try plain.encoded(), type: .error) == plain)
        let located = ErrorChunkPayload(error: .EIO, message: "", offset: 4096)
        #expect(located.chunkType == .errorOffset)
        #expect(try ErrorChunkPayload(decoding: try located.encoded(), type: .errorOffset) == located)
        #expect(protocolErrorCode { _ = try ErrorChunkPayload(decoding: be(UInt32(0)) + be(UInt16(0)), type: .error) } == .invalidValue)
        #expect(protocolErrorCode { _ = try ErrorChunkPayload(decoding: be(UInt32(5)) + be(UInt16(10)) + utf8("ab"), type: .error) } == .lengthMismatch)
        #expect(protocolErrorCode { _ = try ErrorChunkPayload(decoding: be(UInt32(5)) + be(UInt16(0)), type: .errorOffset) } == .truncated)
        let unknownType = try ErrorChunkPayload(decoding: be(UInt32(5)) + be(UInt16(1)) + utf8("x") + [9, 9], type: NBDChunkType(rawValue: 0x8010))
        #expect(unknownType.message == "x")
    }

    @Test("a NONE chunk must be empty and carry DONE")
    func noneChunk() {
        #expect(protocolErrorCode { try ReplyChunkHeader(flags: .done, type: .none, cookie: 1, offset: nil, length: 0).validateNoneChunk() } == nil)
        #expect(protocolErrorCode { try ReplyChunkHeader(flags: [], type: .none, cookie: 1, offset: nil, length: 0).validateNoneChunk() } == .invalidValue)
        #expect(protocolErrorCode { try ReplyChunkHeader(flags: .done, type: .none, cookie: 1, offset: nil, length: 4).validateNoneChunk() } == .invalidValue)
    }
}
