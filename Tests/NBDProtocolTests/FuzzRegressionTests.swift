import Foundation
import Testing
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

/// The committed seeds and regression inputs of a fuzz target (Fuzz/corpus/TARGET).
enum FuzzCorpus {
    static func inputs(of target: String) throws -> [[UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/corpus/\(target)").standardizedFileURL
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { Array(try Data(contentsOf: directory.appendingPathComponent($0))) }
    }
}
