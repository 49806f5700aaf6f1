import Foundation

/// A systemd unit file, read just far enough to run what it says without systemd: the tests
/// take ExecStart=, ExecReload=, EnvironmentFile= and ListenStream= from the installed units,
/// so a unit that drifts from what the server accepts fails here, not on a user's machine.
struct SystemdUnitFile {
    struct Entry: Equatable {
        var section: String
        var key: String
        var value: String
    }

    let path: String
    let entries: [Entry]

    init(path: String) throws {
        self.path = path
        entries = Self.parse(try String(contentsOfFile: path, encoding: .utf8))
    }

    /// Every value of `key` in `section`, in file order (some keys repeat).
    func values(_ key: String, in section: String) -> [String] {
        entries.filter { $0.section == section && $0.key == key }.map(\.value)
    }

    /// The value of a key that must appear exactly once.
    func value(_ key: String, in section: String) throws -> String {
        let found = values(key, in: section)
        guard found.count == 1 else { throw FixtureError("\(path): [\(section)] \(key)= appears \(found.count) times") }
        return found[0]
    }

    /// Sections, `key=value` lines, comments (`#`, `;`) and trailing-backslash continuations.
    static func parse(_ text: String) -> [Entry] {
        var entries: [Entry] = []
        var section = ""
        var pending = ""
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = pending + rawLine.trimmingCharacters(in: .whitespaces)
            pending = ""
            if line.hasSuffix("\\") {
                line.removeLast()
                pending = line + " "
                continue
            }
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            entries.append(Entry(section: section, key: line[..<equals].trimmingCharacters(in: .whitespaces),
                                 value: line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)))
        }
        return entries
    }
}

/// The parts of systemd's command-line and environment-file syntax the units use
/// (systemd.service(5) "Command lines", systemd.exec(5) EnvironmentFile=).
enum SystemdSyntax {
    /// `%i` (instance) and `%%` in a value of a templated unit.
    static func expandSpecifiers(_ value: String, instance: String) -> String {
        value.replacingOccurrences(of: "%%", with: "\u{0}").replacingOccurrences(of: "%i", with: instance)
            .replacingOccurrences(of: "\u{0}", with: "%")
    }

    /// An EnvironmentFile: `KEY=value`, `KEY="value"` (backslash keeps `"\`$`), `KEY='value'`;
    /// blank lines and `#`/`;` comments ignored.
    static func parseEnvironmentFile(_ text: String) -> [String: String] {
        var environment: [String: String] = [:]
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let raw = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            environment[key] = unquoteAssignment(raw)
        }
        return environment
    }

    private static func unquoteAssignment(_ raw: String) -> String {
        if raw.count >= 2, raw.hasPrefix("'"), raw.hasSuffix("'") { return String(raw.dropFirst().dropLast()) }
        guard raw.count >= 2, raw.hasPrefix("\""), raw.hasSuffix("\"") else { return raw }
        var out = ""
        var escaped = false
        for c in raw.dropFirst().dropLast() {
            if escaped {
                if !"\"\\`$".contains(c) { out.append("\\") }
                out.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// Splits at whitespace; single and double quotes group words and are removed.
    static func splitWords(_ text: String) -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quote: Character?
        for c in text {
            if let q = quote {
                if c == q { quote = nil } else { word.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c
                inWord = true
            } else if c == " " || c == "\t" {
                if inWord { words.append(word) }
                word = ""
                inWord = false
            } else {
                word.append(c)
                inWord = true
            }
        }
        if inWord { words.append(word) }
        return words
    }

    /// An ExecStart=/ExecReload= line as argv: a word `$VAR` becomes the variable's value split
    /// into words (none when unset), `${VAR}` inside a word one substitution, `$$` a dollar.
    static func commandLine(_ line: String, environment: [String: String]) -> [String] {
        var argv: [String] = []
        for word in splitWords(line) {
            if word.hasPrefix("$"), !word.hasPrefix("${"), !word.hasPrefix("$$") {
                argv += splitWords(environment[String(word.dropFirst())] ?? "")
            } else {
                argv.append(substituteBraced(word, environment: environment))
            }
        }
        return argv
    }

    private static func substituteBraced(_ word: String, environment: [String: String]) -> String {
        var out = ""
        var rest = Substring(word)
        while let dollar = rest.firstIndex(of: "$") {
            out += rest[..<dollar]
            let after = rest[rest.index(after: dollar)...]
            if after.hasPrefix("$") {
                out += "$"
                rest = after.dropFirst()
            } else if after.hasPrefix("{"), let close = after.firstIndex(of: "}") {
                out += environment[String(after[after.index(after: after.startIndex)..<close])] ?? ""
                rest = after[after.index(after: close)...]
            } else {
                out += "$"
                rest = after
            }
        }
        return out + rest
    }
}
