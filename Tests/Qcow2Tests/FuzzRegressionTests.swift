import Foundation
import Testing
import TestSupport
import Qcow2

/// Inputs the fuzzers (Fuzz/qcow2; docs/fuzzing.md) found,
/// replayed through the same entry points, and the committed seed corpora of those targets.
@Suite("Fuzz regressions: qcow2")
struct Qcow2FuzzRegressionTests {
    @Test("every committed seed of this target replays cleanly", arguments: ["qcow2"])
    func corpus(target: String) throws {
        let inputs = try FuzzCorpus.inputs(of: target)
        #expect(!inputs.isEmpty)
        for input in inputs {
            Qcow2FuzzEntryPoints.image(input)
        }
    }
}
