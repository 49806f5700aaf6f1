import Foundation
import Testing
import TestSupport
import NBDProtocol

/// Inputs the fuzzers (Fuzz/server-negotiation, Fuzz/client-negotiation; docs/fuzzing.md) found,
/// replayed through the same entry points, and the committed seed corpora of those targets.
@Suite("Fuzz regressions: negotiation")
struct ProtocolFuzzRegressionTests {
    @Test("every committed seed of the negotiation targets replays cleanly", arguments: ["server-negotiation", "client-negotiation"])
    func corpus(target: String) throws {
        let inputs = try FuzzCorpus.inputs(of: target)
        #expect(!inputs.isEmpty)
        for input in inputs {
            if target == "server-negotiation" {
                ProtocolFuzzEntryPoints.serverNegotiation(input)
            } else {
                ProtocolFuzzEntryPoints.clientNegotiation(input)
            }
        }
    }
}
