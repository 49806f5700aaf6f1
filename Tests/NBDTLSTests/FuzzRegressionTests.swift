import Foundation
import Testing
import NBDTLS

/// Inputs the fuzzers (Fuzz/psk-file, Fuzz/distinguished-name; docs/fuzzing.md) found,
/// replayed through the same entry points, and the committed seed corpora of those targets.
@Suite("Fuzz regressions: TLS parsers")
struct TLSFuzzRegressionTests {
    @Test("every committed seed of the TLS parser targets replays cleanly", arguments: ["psk-file", "distinguished-name"])
    func corpus(target: String) throws {
        let inputs = try FuzzCorpus.inputs(of: target)
        #expect(!inputs.isEmpty)
        for input in inputs {
            if target == "psk-file" {
                TLSFuzzEntryPoints.pskFile(input)
            } else {
                TLSFuzzEntryPoints.distinguishedName(input)
            }
        }
    }
}

/// The committed seeds and regression inputs of a fuzz target (Fuzz/corpus/TARGET).
enum FuzzCorpus {
    static func inputs(of target: String) throws -> [[UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/corpus/\(target)").standardizedFileURL
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { Array(try Data(contentsOf: directory.appendingPathComponent($0))) }
    }
}
