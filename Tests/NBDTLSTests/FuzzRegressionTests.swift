import Foundation
import Testing
import TestSupport
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
