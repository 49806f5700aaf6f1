import Testing
@testable import NBDProtocol

@Suite("Protocol constants")
struct ConstantTests {
    @Test("magic numbers spell the spec values")
    func magics() {
        #expect(be(NBDMagic.nbdMagic) == utf8("NBDMAGIC"))
        #expect(be(NBDMagic.ihaveopt) == utf8("IHAVEOPT"))
        #expect(NBDMagic.optionReply == 0x3e889045565a9)
        #expect(NBDMagic.oldstyleCliserv == 0x00420281861253)
        #expect(NBDMagic.request == 0x25609513)
        #expect(NBDMagic.extendedRequest == 0x21e41c71)
        #expect(NBDMagic.simpleReply == 0x67446698)
        #expect(NBDMagic.structuredReply == 0x668e33ef)
        #expect(NBDMagic.extendedReply == 0x6e8a278c)
    }

    @Test("option numbers run from 1 to 11 and unknown ones stay representable")
    func options() {
        let all: [NBDOption] = [.exportName, .abort, .list, .peekExport, .startTLS, .info, .go,
                                .structuredReply, .listMetaContext, .setMetaContext, .extendedHeaders]
        #expect(all.map(\.rawValue) == Array(1 ... 11))
        #expect(NBDOption(rawValue: 99).description == "NBD_OPT_99")
        #expect(NBDOption.go.description == "NBD_OPT_GO")
    }

    @Test("error reply types carry bit 31 and unknown ones still count as errors")
    func replyTypes() {
        #expect(NBDReplyType.errUnsupported.rawValue == 0x8000_0001)
        #expect(NBDReplyType.errExtendedHeaderRequired.rawValue == 0x8000_000a)
        #expect(NBDReplyType.errTLSRequired.isError)
        #expect(!NBDReplyType.ack.isError)
        #expect(NBDReplyType(rawValue: 0x8000_00ff).isError)
    }

    @Test("transmission and command flags use the spec bit positions")
    func flags() {
        #expect(TransmissionFlags.sendDF.rawValue == 0x80)
        #expect(TransmissionFlags.sendCache.rawValue == 0x400)
        #expect(TransmissionFlags.sendFastZero.rawValue == 0x800)
        #expect(TransmissionFlags.blockStatusPayload.rawValue == 0x1000)
        #expect(CommandFlags.fastZero.rawValue == 0x10)
        #expect(CommandFlags.payloadLength.rawValue == 0x20)
        #expect(([.hasFlags, .readOnly] as TransmissionFlags).description == "HAS_FLAGS|READ_ONLY")
        #expect(CommandFlags(rawValue: 0x41).description == "FUA|0x40")
    }

    @Test("errno values are Linux numbers and unknown ones normalise to EINVAL")
    func errnos() {
        #expect([NBDErrno.EPERM, .EIO, .ENOMEM, .EINVAL, .ENOSPC, .EOVERFLOW, .ENOTSUP, .ESHUTDOWN].map(\.rawValue)
            == [1, 5, 12, 22, 28, 75, 95, 108])
        #expect(NBDErrno(rawValue: 45).normalized == .EINVAL)
        #expect(NBDErrno.ENOSPC.normalized == .ENOSPC)
        #expect(NBDErrno.success.normalized == .success)
    }

    @Test("chunk types with bit 15 are errors")
    func chunkTypes() {
        #expect(NBDChunkType.error.rawValue == 0x8001)
        #expect(NBDChunkType.errorOffset.rawValue == 0x8002)
        #expect(NBDChunkType.error.isError)
        #expect(!NBDChunkType.offsetData.isError)
        #expect(NBDChunkType(rawValue: 0x8123).isError)
    }
}
