import Testing
import NBDProtocol

/// Random server bytes must always end the handshake in `.finish` or `.fail`, never a trap or a
/// loop: every length the machine asks for is bounded, and it stops after a bounded number of steps.
@Suite("Client negotiation under random input")
struct ClientNegotiationFuzzTests {
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("random replies after a valid greeting end cleanly", arguments: 0..<8)
    func randomReplies(seed: Int) {
        var rng = SplitMix(state: UInt64(seed) &* 7919)
        for round in 0..<300 {
            let policy: ClientTLSPolicy = [.disable, .allow, .require][round % 3]
            let mode: ClientNegotiationConfiguration.Mode = [.go, .list, .info][round % 3]
            var machine = ClientNegotiationStateMachine(configuration: ClientNegotiationConfiguration(mode: mode, tlsPolicy: policy))
            var action = machine.start()
            var steps = 0
            var greeted = false
            loop: while steps < 200 {
                steps += 1
                switch action {
                case .receive(let count), .send(_, let count):
                    #expect(count >= 0 && count <= 16 * 1024, "asked for \(count) bytes")
                    var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    if !greeted {
                        // Mostly a real greeting, so the option phase gets exercised.
                        greeted = true
                        if rng.next() % 8 != 0 { bytes = Array(NewstyleGreeting().bytes[0..<16]) }
                    } else if count == 20 && rng.next() % 2 == 0 {
                        // A plausible reply header with a random type and a small length.
                        let options: [NBDOption] = [.startTLS, .extendedHeaders, .structuredReply, .setMetaContext, .go, .list, .info]
                        let types: [NBDReplyType] = [.ack, .server, .info, .metaContext, .errUnsupported, .errPolicy, .errUnknown, .errShutdown]
                        let header = OptionReplyHeader(option: options[Int(rng.next() % 7)], replyType: types[Int(rng.next() % 8)],
                                                       length: UInt32(rng.next() % 40))
                        bytes = header.bytes
                    } else if count == 2 {
                        bytes = [0, UInt8(rng.next() % 4)]
                    }
                    action = machine.received(bytes)
                case .startTLS:
                    action = machine.tlsEstablished()
                case .finish, .fail:
                    break loop
                }
            }
            #expect(steps < 200, "negotiation did not end")
        }
    }
}
