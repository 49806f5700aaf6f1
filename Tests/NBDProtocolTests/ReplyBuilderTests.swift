import Testing
@testable import NBDProtocol

@Suite("Reply builders")
struct ReplyBuilderTests {
    @Test("success is a simple reply until extended headers, then a NONE chunk")
    func success() throws {
        #expect(ReplyBuilder(form: .simple).success(cookie: 7, requestOffset: 0) == SimpleReplyHeader(cookie: 7).bytes)
        #expect(ReplyBuilder(form: .structured).success(cookie: 7, requestOffset: 0) == SimpleReplyHeader(cookie: 7).bytes)
        let bytes = ReplyBuilder(form: .extended).success(cookie: 7, requestOffset: 4096)
        let header = try ExtendedChunkHeader(decoding: bytes)
        #expect(header == ExtendedChunkHeader(flags: .done, type: .none, cookie: 7, offset: 4096, length: 0))
    }

    @Test("errors are simple replies in simple mode and short ERROR chunks otherwise")
    func errors() throws {
        #expect(ReplyBuilder(form: .simple).error(cookie: 1, requestOffset: 0, error: .ENOSPC, message: "full")
            == SimpleReplyHeader(error: .ENOSPC, cookie: 1).bytes)
        let long = String(repeating: "x", count: 5000)
        let bytes = ReplyBuilder(form: .structured).error(cookie: 1, requestOffset: 0, error: .EIO, message: long)
        let header = try StructuredChunkHeader(decoding: Array(bytes.prefix(20)))
        #expect(header.type == .error)
        #expect(header.flags == .done)
        #expect(Int(header.length) == bytes.count - 20)
        #expect(header.length < 1000)
        let payload = try ErrorChunkPayload(decoding: Array(bytes.dropFirst(20)), type: .error)
        #expect(payload.error == .EIO)
        let extended = ReplyBuilder(form: .extended).error(cookie: 2, requestOffset: 99, error: .EINVAL, message: "bad\0x")
        let extHeader = try ExtendedChunkHeader(decoding: Array(extended.prefix(32)))
        #expect(extHeader.offset == 99)
        #expect(try ErrorChunkPayload(decoding: Array(extended.dropFirst(32)), type: .error).message == "bad?x")
    }

    @Test("read data prefixes carry the chunk header and the 8-byte offset")
    func readPrefix() throws {
        let bytes = try ReplyBuilder(form: .structured).readDataPrefix(cookie: 3, requestOffset: 0, dataOffset: 512, dataLength: 1024, done: true)
        #expect(bytes.count == 28)
        #expect(try StructuredChunkHeader(decoding: Array(bytes.prefix(20))) == StructuredChunkHeader(flags: .done, type: .offsetData, cookie: 3, length: 1032))
        #expect(try OffsetDataChunkPrefix(decoding: Array(bytes.dropFirst(20))).offset == 512)
        #expect(try ReplyBuilder(form: .simple).readDataPrefix(cookie: 3, requestOffset: 0, dataOffset: 0, dataLength: 1, done: true).count == 16)
        #expect(protocolErrorCode { _ = try ReplyBuilder(form: .structured).readDataPrefix(cookie: 3, requestOffset: 0, dataOffset: 0, dataLength: 0, done: true) } == .invalidValue)
    }

    @Test("the read planner turns zero extents into holes and data into data, DF into one chunk")
    func readPlanning() {
        let extents = [
            BlockStatusExtent(length: 4096, allocation: []),
            BlockStatusExtent(length: 4096, allocation: [.hole, .zero]),
            BlockStatusExtent(length: 4096, allocation: .zero),
            BlockStatusExtent(length: 4096, allocation: .hole),
        ]
        #expect(ReadReplyPlanner.plan(offset: 0, length: 16384, extents: extents, dontFragment: false) == [
            .data(offset: 0, length: 4096), .hole(offset: 4096, length: 8192), .data(offset: 12288, length: 4096),
        ])
        #expect(ReadReplyPlanner.plan(offset: 0, length: 16384, extents: extents, dontFragment: true) == [.data(offset: 0, length: 16384)])
        #expect(ReadReplyPlanner.plan(offset: 100, length: 1000, extents: [BlockStatusExtent(length: 1 << 30, allocation: .zero)], dontFragment: false)
            == [.hole(offset: 100, length: 1000)])
        #expect(ReadReplyPlanner.plan(offset: 0, length: 8192, extents: [BlockStatusExtent(length: 4096, allocation: .zero)], dontFragment: false)
            == [.hole(offset: 0, length: 4096), .data(offset: 4096, length: 4096)])
        #expect(ReadReplyPlanner.plan(offset: 0, length: 512, extents: [], dontFragment: false) == [.data(offset: 0, length: 512)])
        #expect(ReadReplyPlanner.plan(offset: 0, length: 0, extents: [], dontFragment: false).isEmpty)
    }

    @Test("planned chunks cover the request exactly and build valid chunk bytes")
    func plannedChunksEncode() throws {
        let builder = ReplyBuilder(form: .extended)
        let chunks = ReadReplyPlanner.plan(offset: 1 << 33, length: 3 << 12,
                                           extents: [BlockStatusExtent(length: 4096, allocation: .zero), BlockStatusExtent(length: 1 << 20, flags: 0)],
                                           dontFragment: false)
        #expect(chunks.reduce(0) { $0 + $1.length } == 3 << 12)
        for (index, chunk) in chunks.enumerated() {
            let bytes = try builder.bytes(for: chunk, cookie: 5, requestOffset: 1 << 33, done: index == chunks.count - 1)
            let header = try ExtendedChunkHeader(decoding: Array(bytes.prefix(32)))
            #expect(header.offset == 1 << 33)
            #expect(header.flags.contains(.done) == (index == chunks.count - 1))
        }
    }

    @Test("REQ_ONE block status yields exactly one extent no longer than the request")
    func requestOne() {
        let extents = [BlockStatusExtent(length: 1 << 20, flags: 0), BlockStatusExtent(length: 512, flags: 3)]
        let payload = BlockStatusReplyPlanner.payload(contextID: 1, requestLength: 4096, extents: extents, requestOne: true, form: .compact)
        #expect(payload.extents == [BlockStatusExtent(length: 4096, flags: 0)])
        let short = BlockStatusReplyPlanner.payload(contextID: 1, requestLength: 1 << 30, extents: extents, requestOne: true, form: .extended)
        #expect(short.extents == [BlockStatusExtent(length: 1 << 20, flags: 0)])
    }

    @Test("block status merges equal neighbours, clips to the request and caps the extent count")
    func blockStatusPlanning() throws {
        let extents = [BlockStatusExtent(length: 512, flags: 1), BlockStatusExtent(length: 0, flags: 2),
                       BlockStatusExtent(length: 512, flags: 1), BlockStatusExtent(length: 4096, flags: 3)]
        let payload = BlockStatusReplyPlanner.payload(contextID: 9, requestLength: 2048, extents: extents, requestOne: false, form: .compact)
        #expect(payload.extents == [BlockStatusExtent(length: 1024, flags: 1), BlockStatusExtent(length: 1024, flags: 3)])
        let many = (0 ..< 10).map { BlockStatusExtent(length: 1, flags: UInt64($0 % 2)) }
        #expect(BlockStatusReplyPlanner.payload(contextID: 9, requestLength: 100, extents: many, requestOne: false, form: .compact, maximumExtents: 4).extents.count == 4)
        #expect(BlockStatusReplyPlanner.payload(contextID: 9, requestLength: 100, extents: [], requestOne: false, form: .compact).extents
            == [BlockStatusExtent(length: 100, flags: 0)])
        let bytes = try ReplyBuilder(form: .structured).blockStatusChunk(cookie: 1, requestOffset: 0, payload: payload, done: true)
        let header = try StructuredChunkHeader(decoding: Array(bytes.prefix(20)))
        #expect(header.type == .blockStatus)
        #expect(try BlockStatusChunkPayload(decoding: Array(bytes.dropFirst(20)), form: .compact) == payload)
        let ext = try ReplyBuilder(form: .extended).blockStatusChunk(cookie: 1, requestOffset: 0, payload: payload, done: true)
        #expect(try ExtendedChunkHeader(decoding: Array(ext.prefix(32))).type == .blockStatusExtended)
        #expect(try BlockStatusChunkPayload(decoding: Array(ext.dropFirst(32)), form: .extended) == payload)
    }

    @Test("chunks cannot be built in simple mode")
    func noChunksInSimpleMode() {
        #expect(protocolErrorCode { _ = try ReplyBuilder(form: .simple).chunkHeader(flags: .done, type: .none, cookie: 1, requestOffset: 0, payloadLength: 0) } == .invalidValue)
        #expect(protocolErrorCode { _ = try ReplyBuilder(form: .structured).chunkHeader(flags: [], type: .offsetData, cookie: 1, requestOffset: 0, payloadLength: 1 << 32) } == .valueOutOfRange)
    }
}
