import Foundation
import Testing

/// scripts/install.sh into a scratch prefix: what it installs, that a second run changes
/// nothing, and that the man pages and completions it generates work in man, bash, zsh, fish.
@Suite("scripts/install.sh: binary, man pages, completions, units", .serialized, .noLeftoverProcesses)
struct InstallInteropTests {
    @Test("install.sh installs everything, and a second run changes nothing")
    func installTwice() throws {
        let scratch = TempDir("install")
        let prefix = scratch.file("prefix")
        let first = try InstallScript.install(prefix: prefix)
        let before = try snapshot(prefix)
        let second = try InstallScript.install(prefix: prefix)
        #expect(second.stdout.hasPrefix("0 files installed"), "\(second)")
        #expect(try snapshot(prefix) == before, "the second run touched files")
        #expect(first.stdout.contains("\(before.count) files installed, 0 already up to date"), "\(first)")

        let expected = ["bin/swiftnbd", "share/bash-completion/completions/swiftnbd", "share/zsh/site-functions/_swiftnbd",
                        "share/fish/vendor_completions.d/swiftnbd.fish", "lib/sysusers.d/swiftnbd.conf", "lib/tmpfiles.d/swiftnbd.conf",
                        "share/doc/swiftnbd/examples/swiftnbd.conf"]
            + SystemdInteropTests.units.map { "lib/systemd/system/\($0)" }
            + (try commandNames()).map { "share/man/man1/\($0).1" }
        #expect(Set(before.keys) == Set(expected))
        #expect(FileManager.default.contentsEqual(atPath: "\(prefix)/bin/swiftnbd", andPath: Peers.swiftnbd))
        #expect(before["bin/swiftnbd"]?.mode == 0o755 && before["lib/systemd/system/swiftnbd.service"]?.mode == 0o644)
        for service in ["swiftnbd.service", "swiftnbd@.service"] {
            let unit = try SystemdUnitFile(path: "\(prefix)/lib/systemd/system/\(service)")
            #expect(try unit.value("ExecStart", in: "Service").hasPrefix("\(prefix)/bin/swiftnbd serve "))
        }
    }

    @Test("man pages, one per command, render without warnings and carry the help text",
          .enabled(if: Peers.available("man")))
    func manPages() throws {
        let scratch = TempDir("install-man")
        let prefix = scratch.file("prefix")
        try InstallScript.install(prefix: prefix)
        for name in try commandNames() {
            let page = "\(prefix)/share/man/man1/\(name).1"
            let rendered = try run(["man", "-l", page], environment: ["MANWIDTH": "100"])
            #expect(rendered.succeeded && rendered.stderr.isEmpty, "\(name): \(rendered)")
            #expect(rendered.stdout.contains("NAME") && rendered.stdout.contains("SYNOPSIS"), "\(name): \(rendered.stdout)")
        }
        // Every option of `serve --help` is in the page's synopsis (mdoc `Fl -name` renders as
        // --name): generated from the same declarations, the two cannot drift apart.
        let source = try String(contentsOfFile: "\(prefix)/share/man/man1/swiftnbd.serve.1", encoding: .utf8)
        let help = try run([Peers.swiftnbd, "serve", "--help"])
        // Option entries are the indented lines starting with a dash ("  -x, --name <name>").
        let options = Set(help.stdout.split(separator: "\n").filter { $0.hasPrefix("  -") }.compactMap { line -> String? in
            line.split(separator: " ").first { $0.hasPrefix("--") }.map { String($0.split(separator: ",")[0]) }
        })
        #expect(options.count > 15, "\(help)")
        for option in options.sorted() where option != "--help" {
            #expect(source.contains("Fl \(option.dropFirst())"), "\(option) missing from swiftnbd.serve(1)")
        }
        #expect(source.contains("SIGHUP: reload TLS credentials."))
        #expect(!source.contains("\n\n"), "blank lines make man warn; install.sh turns them into .Pp")
        let where_ = try run(["man", "-w", "swiftnbd.serve"], environment: ["MANPATH": "\(prefix)/share/man"])
        #expect(where_.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(prefix)/share/man/man1/swiftnbd.serve.1", "\(where_)")
    }

    @Test("the bash completion loads and completes subcommands and options")
    func bashCompletion() throws {
        let scratch = TempDir("install-bash")
        let prefix = scratch.file("prefix")
        try InstallScript.install(prefix: prefix)
        let script = "\(prefix)/share/bash-completion/completions/swiftnbd"
        #expect(try run(["bash", "-n", script]).succeeded)
        for (line, expected) in [("swiftnbd se", "serve"), ("swiftnbd serve --tls-c", "--tls-certificates"), ("swiftnbd certs c", "check create")] {
            let words = line.split(separator: " ").map { "'\($0)'" }.joined(separator: " ")
            let probe = """
                source '\(script)'
                COMP_WORDS=(\(words)); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}
                _swiftnbd swiftnbd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\\n' "${COMPREPLY[*]}"
                """
            let result = try run(["bash", "-c", probe], environment: ["PATH": "\(prefix)/bin:/usr/bin:/bin"])
            let offered = Set(result.stdout.split(whereSeparator: \.isWhitespace).map(String.init))
            #expect(offered == Set(expected.split(separator: " ").map(String.init)), "\(line): \(result)")
        }
    }

    @Test("the zsh completion parses and registers for swiftnbd", .enabled(if: Peers.available("zsh")))
    func zshCompletion() throws {
        let scratch = TempDir("install-zsh")
        let prefix = scratch.file("prefix")
        try InstallScript.install(prefix: prefix)
        let functions = "\(prefix)/share/zsh/site-functions"
        #expect(try run(["zsh", "-n", "\(functions)/_swiftnbd"]).succeeded)
        let result = try run(["zsh", "-f", "-c", "fpath=('\(functions)' $fpath); autoload -Uz compinit; compinit -u -d '\(scratch.file("zcompdump"))'; print -r -- $_comps[swiftnbd]"])
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "_swiftnbd", "\(result)")
    }

    @Test("the fish completion parses and completes subcommands", .enabled(if: Peers.available("fish")))
    func fishCompletion() throws {
        let scratch = TempDir("install-fish")
        let prefix = scratch.file("prefix")
        try InstallScript.install(prefix: prefix)
        let script = "\(prefix)/share/fish/vendor_completions.d/swiftnbd.fish"
        #expect(try run(["fish", "--no-execute", script]).succeeded)
        let result = try run(["fish", "--no-config", "-c", "source '\(script)'; complete -C'swiftnbd se'"],
                             environment: ["PATH": "\(prefix)/bin:/usr/bin:/bin", "HOME": scratch.path])
        #expect(result.stdout.hasPrefix("serve\t"), "\(result)")
    }
}

/// "swiftnbd", "swiftnbd.serve", "swiftnbd.certs.create", … from the binary's own help dump:
/// the man pages generate-manual should write (one per command, `--multi-page`).
private func commandNames() throws -> [String] {
    let dump = try run([Peers.swiftnbd, "--experimental-dump-help"])
    guard dump.succeeded, let json = try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any],
          let root = json["command"] as? [String: Any] else { throw FixtureError("no help dump: \(dump)") }
    var names: [String] = []
    func walk(_ command: [String: Any], path: String) {
        names.append(path)
        for sub in command["subcommands"] as? [[String: Any]] ?? [] {
            if let name = sub["commandName"] as? String { walk(sub, path: "\(path).\(name)") }
        }
    }
    walk(root, path: root["commandName"] as? String ?? "swiftnbd")
    return names
}

/// Every file under `root` (relative path) with what a reinstall would change.
private struct FileState: Equatable {
    var inode: UInt
    var mode: UInt32
    var size: Int
    var modified: Int
}

private func snapshot(_ root: String) throws -> [String: FileState] {
    var states: [String: FileState] = [:]
    guard let walker = FileManager.default.enumerator(atPath: root) else { return states }
    for case let relative as String in walker {
        var info = stat()
        guard lstat("\(root)/\(relative)", &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
        states[relative] = FileState(inode: UInt(info.st_ino), mode: info.st_mode & 0o7777, size: Int(info.st_size),
                                     modified: Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec))
    }
    return states
}
