import Testing
@testable import NBDProtocol

/// A session for validator tables.
func validatorSession(size: UInt64 = 1 << 20, flags: TransmissionFlags = [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .sendDF],
                      blockSizes: NBDBlockSizes = NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 1 << 25),
                      form: ReplyForm = .structured, contexts: [UInt32: NBDMetaContext] = [1: .baseAllocation],
                      askedBlockSizes: Bool = true) -> NegotiatedSession {
    NegotiatedSession(export: ExportDescriptor(name: "disk", size: size, transmissionFlags: flags, blockSizes: blockSizes),
                      structuredReplies: form != .simple, extendedHeaders: form == .extended, metaContexts: contexts,
                      clientRequestedBlockSizes: askedBlockSizes, transmissionFlags: flags, clientFlags: [.fixedNewstyle],
                      tlsActive: false, peerIdentity: nil)
}

/// The verdict reduced to what tables compare: valid, an errno, or disconnect.
enum Verdict: Hashable {
    case valid
    case error(NBDErrno)
    case disconnect
}

func verdict(_ validation: RequestValidation) -> Verdict {
    switch validation {
    case .valid: .valid
    case .reply(let error, let message):
        { #expect(!message.isEmpty && message.utf8.count < 256); return .error(error) }()
    case .disconnect: .disconnect
    }
}

func check(_ session: NegotiatedSession, _ table: [(NBDRequest, Verdict)], sourceLocation: SourceLocation = #_sourceLocation) {
    let validator = RequestValidator(session: session)
    for (index, (request, expected)) in table.enumerated() {
        #expect(verdict(validator.validate(request)) == expected,
                "row \(index): \(request.command) flags \(request.flags) offset \(request.offset) length \(request.length)",
                sourceLocation: sourceLocation)
    }
}

func req(_ command: NBDCommand, _ flags: CommandFlags = [], offset: UInt64 = 0, length: UInt64 = 0) -> NBDRequest {
    NBDRequest(command: command, flags: flags, cookie: 1, offset: offset, length: length)
}

@Suite("Request validator")
struct RequestValidatorTests {
    let size: UInt64 = 1 << 20

    @Test("requests inside the export are valid")
    func valid() {
        check(validatorSession(), [
            (req(.read, offset: 0, length: 4096), .valid),
            (req(.write, .fua, offset: 512, length: 512), .valid),
            (req(.flush), .valid),
            (req(.trim, offset: 0, length: size), .valid),
            (req(.writeZeroes, [.noHole, .fastZero], offset: 4096, length: 4096), .valid),
            (req(.cache, offset: 0, length: 4096), .valid),
            (req(.blockStatus, .requestOne, offset: 0, length: size), .valid),
            (req(.disconnect, offset: 99, length: 99), .valid),
            (req(.read, .dontFragment, offset: 0, length: 65536), .valid),
        ])
    }

    @Test("offset plus length overflowing near 2^64 is out of range, never wrapped")
    func overflow() {
        check(validatorSession(askedBlockSizes: false), [
            (req(.read, offset: UInt64.max, length: 1), .error(.EINVAL)),
            (req(.read, offset: 512, length: UInt64.max - 511), .error(.EINVAL)),
            (req(.write, offset: UInt64.max - 511, length: 512), .error(.ENOSPC)),
            (req(.writeZeroes, offset: 1, length: UInt64.max), .error(.ENOSPC)),
            (req(.trim, offset: size, length: 1), .error(.EINVAL)),
            (req(.trim, offset: size, length: 0), .valid),
            (req(.blockStatus, offset: size - 512, length: 1024), .error(.EINVAL)),
            (req(.cache, offset: size + 1, length: 0), .error(.EINVAL)),
        ])
    }

    @Test("writes beyond the end get ENOSPC, other commands EINVAL")
    func beyondEnd() {
        check(validatorSession(), [
            (req(.write, offset: size, length: 512), .error(.ENOSPC)),
            (req(.writeZeroes, offset: size - 512, length: 1024), .error(.ENOSPC)),
            (req(.read, offset: size, length: 512), .error(.EINVAL)),
            (req(.trim, offset: size - 512, length: 1024), .error(.EINVAL)),
        ])
    }

    @Test("a read-only export refuses writes, trims and zeroing with EPERM")
    func readOnly() {
        check(validatorSession(flags: [.hasFlags, .readOnly, .sendFlush, .sendTrim, .sendWriteZeroes]), [
            (req(.write, offset: 0, length: 512), .error(.EPERM)),
            (req(.trim, offset: 0, length: 512), .error(.EPERM)),
            (req(.writeZeroes, offset: 0, length: 512), .error(.EPERM)),
            (req(.read, offset: 0, length: 512), .valid),
            (req(.flush), .valid),
        ])
    }

    @Test("flags that are unknown, not advertised or not valid for the command get EINVAL")
    func flags() {
        check(validatorSession(flags: [.hasFlags, .sendFlush, .sendWriteZeroes]), [
            (req(.write, .fua, offset: 0, length: 512), .error(.EINVAL)),
            (req(.writeZeroes, .fastZero, offset: 0, length: 512), .error(.EINVAL)),
            (req(.read, .dontFragment, offset: 0, length: 512), .error(.EINVAL)),
            (req(.read, .requestOne, offset: 0, length: 512), .error(.EINVAL)),
            (req(.write, .noHole, offset: 0, length: 512), .error(.EINVAL)),
            (req(.read, CommandFlags(rawValue: 0x8000), offset: 0, length: 512), .error(.EINVAL)),
            (req(.write, .payloadLength, offset: 0, length: 512), .error(.EINVAL)),
            (req(.writeZeroes, .noHole, offset: 0, length: 512), .valid),
        ])
    }

    @Test("FLUSH with a non-zero offset or length is invalid, and unsupported commands too")
    func flushAndUnsupported() {
        check(validatorSession(flags: [.hasFlags]), [
            (req(.flush), .error(.EINVAL)),
            (req(.trim, offset: 0, length: 512), .error(.EINVAL)),
            (req(.writeZeroes, offset: 0, length: 512), .error(.EINVAL)),
            (req(.cache, offset: 0, length: 512), .valid),
        ])
        check(validatorSession(), [
            (req(.flush, offset: 512), .error(.EINVAL)),
            (req(.flush, length: 512), .error(.EINVAL)),
        ])
    }

    @Test("unknown commands and RESIZE get EINVAL")
    func unknownCommands() {
        check(validatorSession(), [
            (req(.resize, offset: 1 << 30), .error(.EINVAL)),
            (req(NBDCommand(rawValue: 99)), .error(.EINVAL)),
            (req(NBDCommand(rawValue: 0xffff), .fua), .error(.EINVAL)),
        ])
    }

    @Test("BLOCK_STATUS needs a selected context, structured replies and a non-zero length")
    func blockStatus() {
        check(validatorSession(contexts: [:]), [(req(.blockStatus, offset: 0, length: 512), .error(.EINVAL))])
        check(validatorSession(form: .simple), [(req(.blockStatus, offset: 0, length: 512), .error(.EINVAL))])
        check(validatorSession(), [
            (req(.blockStatus, offset: 0, length: 0), .error(.EINVAL)),
            (req(.blockStatus, .requestOne, offset: 512, length: 512), .valid),
        ])
    }

    @Test("zero-length reads, writes, trims and zeroing are accepted")
    func zeroLength() {
        check(validatorSession(), [
            (req(.read, offset: 0, length: 0), .valid),
            (req(.write, offset: 512, length: 0), .valid),
            (req(.trim, offset: 0, length: 0), .valid),
            (req(.writeZeroes, offset: 0, length: 0), .valid),
        ])
    }

    @Test("misaligned requests are refused only when the client asked for block sizes")
    func alignment() {
        let odd: UInt64 = (1 << 20) + 100
        check(validatorSession(size: odd), [
            (req(.read, offset: 1, length: 512), .error(.EINVAL)),
            (req(.write, offset: 0, length: 100), .error(.EINVAL)),
            (req(.read, offset: 1 << 20, length: 100), .valid),
        ])
        check(validatorSession(askedBlockSizes: false), [
            (req(.read, offset: 1, length: 511), .valid),
        ])
    }

    @Test("oversize reads get EINVAL, or EOVERFLOW with DF")
    func oversizeReads() {
        let small = NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 65536)
        check(validatorSession(blockSizes: small), [
            (req(.read, offset: 0, length: 65537), .error(.EINVAL)),
            (req(.read, .dontFragment, offset: 0, length: 65537), .error(.EOVERFLOW)),
            (req(.read, offset: 0, length: 65536), .valid),
            (req(.trim, offset: 0, length: 1 << 20), .valid),
        ])
        let unlimited = NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 0xffff_ffff)
        check(validatorSession(size: 1 << 40, blockSizes: unlimited), [
            (req(.read, .dontFragment, offset: 0, length: 0xffff_fff0), .error(.EOVERFLOW)),
            (req(.read, offset: 0, length: 0xffff_fff0), .valid),
        ])
    }

    @Test("oversize writes are drained and refused up to 32 MiB and disconnect beyond")
    func oversizeWrites() {
        let small = NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 65536)
        check(validatorSession(size: 1 << 30, blockSizes: small), [
            (req(.write, offset: 0, length: 65537), .error(.EINVAL)),
            (req(.write, offset: 0, length: 1 << 25), .error(.EINVAL)),
            (req(.write, offset: 0, length: (1 << 25) + 1), .disconnect),
            (req(.write, offset: 0, length: 0xffff_ffff), .disconnect),
        ])
    }

    @Test("extended headers: PAYLOAD_LEN is for WRITE; other payloads are drained and refused")
    func extendedPayloads() {
        check(validatorSession(size: 1 << 40, form: .extended), [
            (req(.write, .payloadLength, offset: 0, length: 4096), .valid),
            (req(.write, offset: 0, length: 4096), .valid),
            (req(.blockStatus, .payloadLength, offset: 0, length: 12), .error(.EINVAL)),
            (req(.read, .payloadLength, offset: 0, length: 8), .error(.EINVAL)),
            (req(.read, .payloadLength, offset: 0, length: 1 << 40), .disconnect),
            (req(NBDCommand(rawValue: 42), .payloadLength, offset: 0, length: 16), .error(.EINVAL)),
            (req(.trim, offset: 0, length: 1 << 40), .valid),
            (req(.writeZeroes, offset: 0, length: 1 << 40), .valid),
        ])
        #expect(req(.read, .payloadLength, length: 8).payloadLength(form: .extended) == 8)
        #expect(req(.trim, length: 1 << 40).payloadLength(form: .extended) == 0)
    }
}
