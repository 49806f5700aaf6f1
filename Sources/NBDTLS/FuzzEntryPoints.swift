/// Entry points shared by the libFuzzer targets (Fuzz/psk-file, Fuzz/distinguished-name) and
/// their regression tests: arbitrary bytes through the real parsers. Every input must end in a
/// value or a `TLSError`; anything else (a trap) is a bug.
package enum TLSFuzzEntryPoints {
    /// A psktool key file: parse, look a key up, serialise and parse the result again.
    package static func pskFile(_ bytes: [UInt8]) {
        guard let file = try? PSKKeyFile(parsing: bytes, source: "fuzz") else { return }
        _ = file.key(for: file.entries.first?.identity ?? "")
        let text = file.serialized()
        guard let again = try? PSKKeyFile(parsing: Array(text.utf8), source: "fuzz (re-parsed)") else {
            fatalError("a serialised PSK file does not parse again: \(text.debugDescription)")
        }
        fuzzCheck(again.entries.count == file.entries.count, "PSK round trip changed the number of entries")
    }

    /// A distinguished name (as given to `--tls-authz`, or from a peer certificate): the input is
    /// split at the first NUL into an authorisation pattern and a subject, both parsed, printed,
    /// re-parsed and matched.
    package static func distinguishedName(_ bytes: [UInt8]) {
        let parts = bytes.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
        let texts = parts.map { String(decoding: $0, as: UTF8.self) }
        var names: [DistinguishedName] = []
        for text in texts {
            guard let name = try? DistinguishedName(parsing: text) else { continue }
            _ = name.reversed.matches(name)
            // What we print must parse again (the escaping round-trips).
            if let again = try? DistinguishedName(parsing: name.description) {
                _ = again.matches(name)
            }
            names.append(name)
        }
        let list = DNAuthorizationList(names)
        for name in names { _ = list.permits(name) }
        _ = try? DNAuthorizationList(parsing: texts)
    }
}

/// A harness invariant: unlike `precondition`, the message survives optimised builds, so the
/// fuzzer's crash report says what was violated.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
