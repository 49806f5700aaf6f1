import Foundation
import Testing

/// A TLS-requiring `swiftnbd` client against a downgrading man-in-the-middle (CVE-2019-14842
/// class): it must refuse with one clear sentence and never name an export in plaintext.
@Suite("TLS: require-mode client refuses downgrades", .serialized, .noLeftoverProcesses)
struct TLSDowngradeInteropTests {
    private func attempt(_ script: TLSScriptedServer.Script) throws -> (RunResult, TLSScriptedServer) {
        let creds = try TLSCredentials(label: "downgrade")
        let server = try TLSScriptedServer(script)
        let result = try run([Peers.swiftnbd, "info", "nbds://localhost:\(server.port)/secret-export?tls-certificates=\(try creds.clientDirectory())"], timeout: 60)
        return (result, server)
    }

    private func expectNoExportNameSent(_ server: TLSScriptedServer, _ result: RunResult) {
        #expect(result.stderr.contains("TLS is required"), "not one clear sentence: \(result)")
        let sent = server.received()
        let text = String(decoding: sent, as: UTF8.self)
        #expect(!text.contains("secret-export"), "the export name left in plaintext: \(sent)\n\(result)")
    }

    @Test("a server that answers STARTTLS with ERR_POLICY is refused")
    func refusedStartTLS() throws {
        let (result, server) = try attempt(.refuseStartTLS(replyType: 0x8000_0002))
        #expect(!result.succeeded)
        #expect(result.stderr.contains("TLS"), "\(result)")
        expectNoExportNameSent(server, result)
        #expect(server.optionsSent().allSatisfy { $0 == 5 || $0 == 2 }, "options after a refused STARTTLS: \(server.optionsSent())")
    }

    @Test("a server that answers STARTTLS with ERR_UNSUP is refused")
    func unsupportedStartTLS() throws {
        let (result, server) = try attempt(.refuseStartTLS(replyType: 0x8000_0001))
        #expect(!result.succeeded)
        expectNoExportNameSent(server, result)
    }

    @Test("a server that closes instead of answering STARTTLS is refused")
    func closedOnStartTLS() throws {
        let (result, server) = try attempt(.closeOnStartTLS)
        #expect(!result.succeeded)
        expectNoExportNameSent(server, result)
    }

    @Test("a newstyle server without FIXED_NEWSTYLE is refused")
    func nonFixedNewstyle() throws {
        let (result, server) = try attempt(.nonFixedNewstyle)
        #expect(!result.succeeded)
        #expect(result.stderr.contains("TLS") || result.stderr.contains("fixed"), "\(result)")
        expectNoExportNameSent(server, result)
    }

    @Test("an oldstyle server is refused")
    func oldstyle() throws {
        let (result, server) = try attempt(.oldstyle)
        #expect(!result.succeeded)
        expectNoExportNameSent(server, result)
    }
}
