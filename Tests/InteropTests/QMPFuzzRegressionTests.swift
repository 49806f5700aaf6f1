import Foundation
import Testing
import QMP

/// Inputs the fuzzer Fuzz/qmp (docs/fuzzing.md) found, replayed through the same entry point,
/// and its committed seed corpus. (QMP has no unit-test target of its own; these tests need no
/// peer.)
@Suite("Fuzz regressions: QMP")
struct QMPFuzzRegressionTests {
    @Test("every committed seed of the QMP target replays cleanly")
    func corpus() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/corpus/qmp").standardizedFileURL
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(!names.isEmpty)
        for name in names {
            QMPFuzzEntryPoints.monitorStream(Array(try Data(contentsOf: directory.appendingPathComponent(name))))
        }
    }
}
