import Foundation
import Testing
import TestSupport
import NBDServer

/// Inputs the fuzzers (Fuzz/transmission; docs/fuzzing.md) found,
/// replayed through the same entry points, and the committed seed corpora of those targets.
@Suite("Fuzz regressions: transmission")
struct TransmissionFuzzRegressionTests {
    @Test("every committed seed of this target replays cleanly", arguments: ["transmission"])
    func corpus(target: String) throws {
        let inputs = try FuzzCorpus.inputs(of: target)
        #expect(!inputs.isEmpty)
        for input in inputs {
            TransmissionFuzzEntryPoints.requestStream(input)
        }
    }
}
