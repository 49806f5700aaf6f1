import Testing
import TestSupport
@testable import NBDProtocol

/// Deterministic pseudo-random bytes, so failures reproduce.
struct SeededBytes {
    private var rng: SplitMix64

    init(state: UInt64) { rng = SplitMix64(seed: state) }

    mutating func next() -> UInt64 { rng.next() }

    mutating func bytes(_ count: Int) -> [UInt8] { rng.bytes(count) }

    /// Mostly small lengths, sometimes the dangerous edge values.
    mutating func interestingU32() -> UInt32 {
        let edges: [UInt32] = [0, 1, 4, 5, 6, 4095, 4096, 4097, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff]
        return next() % 3 == 0 ? edges[Int(next() % UInt64(edges.count))] : UInt32(next() % 64)
    }
}

@Suite("Malformed input never traps")
struct FuzzTests {
    /// Every payload decoder, fed random and structured-garbage input.
    static let decoders: [(String, ([UInt8]) throws -> Void)] = [
        ("InfoRequestPayload", { _ = try InfoRequestPayload(decoding: $0) }),
        ("MetaContextRequestPayload", { _ = try MetaContextRequestPayload(decoding: $0) }),
        ("ExportNameOptionPayload", { _ = try ExportNameOptionPayload(decoding: $0) }),
        ("ServerReplyPayload", { _ = try ServerReplyPayload(decoding: $0) }),
        ("InfoReplyPayload", { _ = try InfoReplyPayload(decoding: $0) }),
        ("MetaContextReplyPayload", { _ = try MetaContextReplyPayload(decoding: $0) }),
        ("OptionErrorMessage", { _ = try OptionErrorMessage(decoding: $0) }),
        ("BlockStatus compact", { _ = try BlockStatusChunkPayload(decoding: $0, form: .compact) }),
        ("BlockStatus extended", { _ = try BlockStatusChunkPayload(decoding: $0, form: .extended) }),
        ("ErrorChunk", { _ = try ErrorChunkPayload(decoding: $0, type: .error) }),
        ("ErrorOffsetChunk", { _ = try ErrorChunkPayload(decoding: $0, type: .errorOffset) }),
        ("OffsetHole", { _ = try OffsetHoleChunkPayload(decoding: $0) }),
        ("NewstyleGreeting", { _ = try NewstyleGreeting(decoding: $0) }),
        ("OptionHeader", { _ = try OptionHeader(decoding: $0) }),
        ("OptionReplyHeader", { _ = try OptionReplyHeader(decoding: $0) }),
        ("Request compact", { _ = try NBDRequest(decoding: $0, form: .compact) }),
        ("Request extended", { _ = try NBDRequest(decoding: $0, form: .extended) }),
    ]

    @Test("every decoder survives thousands of random and length-spliced inputs")
    func decodersSurvive() {
        var random = SeededBytes(state: 0x5eed)
        for (name, decode) in Self.decoders {
            for round in 0 ..< 1500 {
                var input: [UInt8]
                if round % 2 == 0 {
                    input = random.bytes(Int(random.next() % 48))
                } else {
                    // A plausible prefix: lengths and counts at the edges, then a little data.
                    input = be(random.interestingU32()) + random.bytes(Int(random.next() % 8))
                        + be(random.interestingU32()) + be(random.interestingU32()) + random.bytes(Int(random.next() % 16))
                }
                do {
                    try decode(input)
                } catch is NBDProtocolError {
                } catch {
                    Issue.record("\(name) threw a foreign error \(error)")
                }
            }
        }
    }

    @Test("random option sequences end in actions the engine can follow, never a trap")
    func negotiationSurvives() {
        var random = SeededBytes(state: 42)
        let options: [NBDOption] = [.exportName, .abort, .list, .peekExport, .startTLS, .info, .go, .structuredReply,
                                    .listMetaContext, .setMetaContext, .extendedHeaders, NBDOption(rawValue: 999)]
        for mode in [ServerTLSMode.off, .on, .require] {
            for _ in 0 ..< 300 {
                var machine = ServerNegotiationStateMachine(configuration: Fixtures.configuration(mode))
                _ = machine.start()
                var next = machine.receivedClientFlags(UInt32(random.next() % 4))
                var steps = 0
                while steps < 40, !machine.isFinished {
                    steps += 1
                    switch next.last {
                    case .readNextOption:
                        let option = options[Int(random.next() % UInt64(options.count))]
                        let payload: [UInt8]
                        switch random.next() % 4 {
                        case 0: payload = []
                        case 1: payload = goPayload(["", "disk", "secret", "nope"][Int(random.next() % 4)], [.name, .blockSize])
                        case 2: payload = metaPayload("disk", ["base:allocation", "qemu:", "x:y"])
                        default: payload = random.bytes(Int(random.next() % 24))
                        }
                        next = machine.receivedOptionHeader(option: option, length: UInt32(payload.count))
                        if next == [.readOptionPayload(length: UInt32(payload.count))] {
                            next = machine.receivedOption(option: option, payload: payload)
                        }
                    case .startTLS:
                        next = random.next() % 5 == 0
                            ? machine.tlsHandshakeFailed(reason: "fuzz")
                            : machine.tlsHandshakeSucceeded(peerIdentity: nil)
                    default:
                        Issue.record("unexpected last action \(String(describing: next.last)) in mode \(mode)")
                        steps = 40
                    }
                    for action in next {
                        if case .send(let bytes) = action, bytes.count >= 20, let header = try? OptionReplyHeader(decoding: Array(bytes.prefix(20))) {
                            #expect(Int(header.length) == bytes.count - 20)
                            #expect(header.length < 4096)
                            #expect(!(mode == .off && header.replyType == .errTLSRequired), "ERR_TLS_REQD with TLS off")
                        }
                    }
                }
            }
        }
    }
}
