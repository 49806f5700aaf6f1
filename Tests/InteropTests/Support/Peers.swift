import Foundation

/// Which real peers (qemu-img, nbdkit, …) are installed.
///
/// On a developer's machine a missing tool disables the tests that need it. Under CI
/// (`CI` set in the environment) every peer counts as present, so a missing install
/// fails loudly instead of silently skipping: a skipped peer in CI is a defect.
enum Peers {
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty && $0 != "false" } ?? false }

    static func available(_ tools: String...) -> Bool {
        inCI || tools.allSatisfy { path(of: $0) != nil }
    }

    static func path(of tool: String) -> String? {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") + ["/usr/sbin", "/usr/bin"]
        for dir in dirs {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// The `swiftnbd` binary built next to this test bundle (`.build/<config>/swiftnbd`),
    /// or `$SWIFTNBD` when set.
    static var swiftnbd: String {
        if let explicit = ProcessInfo.processInfo.environment["SWIFTNBD"] { return explicit }
        var dir = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").deletingLastPathComponent()
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("swiftnbd").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        // Fall back to the package's default build folder.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/swiftnbd").path
    }
}
