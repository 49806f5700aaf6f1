import Foundation
import Testing
import TestSupport
import NBDClient
import NBDProtocol

/// Inputs the fuzzers (Fuzz/uri, Fuzz/client-replies; docs/fuzzing.md) found, replayed through
/// the same entry points, and the committed seed corpora of those targets.
@Suite("Fuzz regressions: client")
struct ClientFuzzRegressionTests {
    @Test("uri: a percent-encoded ':' in the host is refused (it printed as a bracketed IPv6 host that does not parse)")
    func uriEncodedColonInHost() throws {
        // Found by Fuzz/uri: 'nbds://h…%2F…@…%3a)ame=ŉ' parsed with host "…:)ame=ŉ".
        let crash: [UInt8] = [
            0x6e, 0x62, 0x64, 0x73, 0x3a, 0x2f, 0x2f, 0x68, 0xd2, 0x25, 0x32, 0x46, 0xd2, 0xd2, 0xd2, 0x40,
            0xa2, 0x25, 0x32, 0x46, 0xd2, 0xd2, 0xd2, 0x40, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0xd2, 0x25,
            0x33, 0x61, 0x29, 0x61, 0x6d, 0x65, 0x3d, 0xc5, 0x89,
        ]
        ClientFuzzEntryPoints.uri(crash)
        #expect(throws: NBDClientError.self) { try NBDURI("nbd://a%3Ab/") }
        #expect(throws: NBDClientError.self) { try NBDURI("nbd://a%3a10809/x") }
        #expect(try NBDURI("nbd://[::1]:10810/x").transport == .tcp(host: "::1", port: 10810))
    }

    @Test("every committed seed of the client targets replays cleanly", arguments: ["uri", "client-replies"])
    func corpus(target: String) throws {
        let inputs = try FuzzCorpus.inputs(of: target)
        #expect(!inputs.isEmpty)
        for input in inputs {
            switch target {
            case "uri": ClientFuzzEntryPoints.uri(input)
            default: ClientFuzzEntryPoints.replyStream(input)
            }
        }
    }
}
