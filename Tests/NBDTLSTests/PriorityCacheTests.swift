import Testing
@testable import NBDTLS

/// `gnutls_priority_init` reports where parsing stopped with a pointer into the string it was
/// given; reading it after that C string was freed was a heap-use-after-free (issue 14), so
/// these run the error path and are meant to be run under ASan too (scripts/sanitizers.sh).
@Suite("GnuTLS priority strings")
struct PriorityCacheTests {
    @Test("a valid priority string is accepted and kept")
    func valid() throws {
        let cache = try PriorityCache("NORMAL:-VERS-ALL:+VERS-TLS1.3")
        #expect(cache.text == "NORMAL:-VERS-ALL:+VERS-TLS1.3")
    }

    @Test("an invalid element is refused with the byte offset and the text where parsing stopped")
    func invalidElementNamed() {
        let text = "NORMAL:+BOGUS-CIPHER:-VERS-TLS1.0"
        do {
            _ = try PriorityCache(text)
            Issue.record("'\(text)' was accepted")
        } catch let error as TLSError {
            #expect(error.code == .invalidArgument)
            #expect(error.gnutlsCode == -50)  // GNUTLS_E_INVALID_REQUEST
            #expect(error.message.contains("'\(text)' is invalid"))
            #expect(error.message.contains("at byte 7"), "\(error.message)")
            #expect(error.message.contains("near '+BOGUS-CIPHER:-VERS-TLS1.0'"), "\(error.message)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("an unknown keyword at the start and a bad modifier later are both located",
          arguments: [("FOO", 0, "FOO"), ("SECURE256:%NOPE", 10, "%NOPE")])
    func located(text: String, offset: Int, near: String) {
        #expect {
            _ = try PriorityCache(text)
        } throws: { error in
            guard let error = error as? TLSError else { return false }
            return error.code == .invalidArgument
                && error.message.contains("at byte \(offset)")
                && error.message.contains("near '\(near)'")
        }
    }

    @Test("the error path survives many long, freshly built strings (use-after-free regression)")
    func manyInvalid() {
        for i in 0..<200 {
            let text = "NORMAL:" + String(repeating: "+AES-128-GCM:", count: i % 7) + "+NOT-A-THING-\(i)"
            let offset = 7 + 13 * (i % 7)
            #expect(throws: TLSError.self) { _ = try PriorityCache(text) }
            do { _ = try PriorityCache(text) } catch let error as TLSError {
                #expect(error.message.hasSuffix("at byte \(offset) near '+NOT-A-THING-\(i)'"), "\(error.message)")
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
    }

    @Test("an empty priority string is refused without a position fragment")
    func empty() {
        #expect(throws: TLSError.self) { _ = try PriorityCache("") }
    }

    @Test("a server configuration with an invalid priority fails to build its context with the location")
    func throughServerContext() throws {
        let pki = try TestPKI()
        #expect {
            _ = try TLSServerContext(TLSServerConfiguration(credentials: .x509(directory: pki.directory),
                                                            priority: "NORMAL:+NO-SUCH-GROUP", handshakeTimeout: testHandshakeTimeout))
        } throws: { error in
            (error as? TLSError)?.message.contains("near '+NO-SUCH-GROUP'") == true
        }
    }
}
