import Foundation

/// scripts/install.sh, run with the swiftnbd under test (`--binary`, so no second build).
enum InstallScript {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static var path: String { "\(repository)/scripts/install.sh" }

    /// Installs into `prefix` (under `destdir` when given) and fails on a non-zero exit.
    @discardableResult
    static func install(prefix: String, destdir: String? = nil) throws -> RunResult {
        var environment: [String: String] = ["SOURCE_DATE_EPOCH": "1780000000"]
        if let destdir { environment["DESTDIR"] = destdir }
        let result = try run([path, "--binary", Peers.swiftnbd, "--manual-tool", try ManualTool.path(), prefix],
                             environment: environment, timeout: 300)
        guard result.succeeded else { throw FixtureError("install.sh failed: \(result)") }
        return result
    }
}

/// swift-argument-parser's `generate-manual`, which install.sh needs to write the man pages.
///
/// `swift test` holds the lock on its scratch directory for the whole run, so install.sh cannot
/// build the tool there. It is taken from `$SWIFTNBD_GENERATE_MANUAL`, else from beside the
/// swiftnbd under test (`swift build --product generate-manual` puts it there), else built
/// once from the argument-parser checkout into `.build-generate-manual` (about a minute).
enum ManualTool {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cached: String?

    static func path() throws -> String {
        lock.lock(); defer { lock.unlock() }
        if let cached { return cached }
        let found = try locate()
        cached = found
        return found
    }

    private static func locate() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["SWIFTNBD_GENERATE_MANUAL"] { return explicit }
        let binary = URL(fileURLWithPath: Peers.swiftnbd).resolvingSymlinksInPath()
        let beside = binary.deletingLastPathComponent().appendingPathComponent("generate-manual").path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }

        var dir = binary.deletingLastPathComponent()
        var checkout: String?
        for _ in 0..<5 where checkout == nil {
            let candidate = dir.appendingPathComponent("checkouts/swift-argument-parser").path
            if FileManager.default.fileExists(atPath: "\(candidate)/Package.swift") { checkout = candidate }
            dir = dir.deletingLastPathComponent()
        }
        guard let checkout else { throw FixtureError("no generate-manual beside \(binary.path) and no swift-argument-parser checkout") }
        let scratch = "\(InstallScript.repository)/.build-generate-manual"
        let build = ["swift", "build", "--package-path", checkout, "--scratch-path", scratch, "--product", "generate-manual"]
        let result = try run(build, timeout: 900)
        guard result.succeeded else { throw FixtureError("building generate-manual failed: \(result)") }
        let tool = "\(scratch)/debug/generate-manual"
        guard FileManager.default.isExecutableFile(atPath: tool) else { throw FixtureError("no \(tool) after \(result)") }
        return tool
    }
}
