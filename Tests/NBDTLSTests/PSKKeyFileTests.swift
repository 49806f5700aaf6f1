import Testing
@testable import NBDTLS

@Suite("psktool key files")
struct PSKKeyFileTests {
    @Test("identities and hex keys are decoded, CRLF and comments tolerated")
    func parsesEntries() throws {
        let text = "# keys\r\nalice:00ff10\r\n\r\nbob:ABCDEF\n"
        let file = try PSKKeyFile(parsing: Array(text.utf8))
        #expect(file.entries == [.init(identity: "alice", key: [0x00, 0xff, 0x10]), .init(identity: "bob", key: [0xab, 0xcd, 0xef])])
        #expect(file.key(for: "bob") == [0xab, 0xcd, 0xef])
        #expect(file.key(for: "carol") == nil)
    }

    @Test("serialized files parse back to the same entries")
    func roundTrip() throws {
        let file = PSKKeyFile(entries: [.init(identity: "qemu", key: Array(0..<32))])
        #expect(try PSKKeyFile(parsing: Array(file.serialized().utf8)) == file)
    }

    @Test("malformed lines are rejected with their line number", arguments: [
        ("alice:00\nbob\n", "line 2: no ':' separator"),
        (":00ff\n", "line 1: empty identity"),
        ("alice:\n", "line 1: empty key for identity 'alice'"),
        ("alice:abc\n", "line 1: key for identity 'alice' has an odd number of hex digits"),
        ("ok:00\n\nalice:zz\n", "line 3: key for identity 'alice' contains a non-hex character"),
        ("alice:00 11\n", "line 1: key for identity 'alice' has an odd number of hex digits"),
    ])
    func malformed(text: String, expected: String) {
        let error = #expect(throws: TLSError.self) { try PSKKeyFile(parsing: Array(text.utf8), source: "keys.psk") }
        #expect(error?.message.contains("keys.psk \(expected)") == true, "\(String(describing: error))")
        #expect(error?.code == .credentials)
    }

    @Test("an empty file or a file of comments has no keys")
    func empty() {
        for text in ["", "\n\n", "# nothing\n"] {
            let error = #expect(throws: TLSError.self) { try PSKKeyFile(parsing: Array(text.utf8), source: "k") }
            #expect(error?.message == "k contains no keys")
        }
    }

    @Test("a missing key file is named in the error")
    func missingFile() {
        let error = #expect(throws: TLSError.self) { try PSKKeyFile(contentsOf: "/nonexistent/keys.psk") }
        #expect(error?.message.contains("cannot read PSK key file '/nonexistent/keys.psk'") == true)
    }
}
