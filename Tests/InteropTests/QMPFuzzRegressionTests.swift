import Foundation
import Testing
import TestSupport
import QMP

/// Inputs the fuzzer Fuzz/qmp (docs/fuzzing.md) found, replayed through the same entry point,
/// and its committed seed corpus. (QMP has no unit-test target of its own; these tests need no
/// peer.)
@Suite("Fuzz regressions: QMP", .noLeftoverProcesses)
struct QMPFuzzRegressionTests {
    @Test("every committed seed of the QMP target replays cleanly")
    func corpus() throws {
        let inputs = try FuzzCorpus.inputs(of: "qmp")
        #expect(!inputs.isEmpty)
        for input in inputs {
            QMPFuzzEntryPoints.monitorStream(input)
        }
    }
}
