import Foundation
import Testing

/// Proves that no process a test started (a QEMU, qemu-nbd, nbdkit, a swiftnbd server, or
/// anything those start in turn) outlives the test.
///
/// Every process the interop tests spawn carries `SWIFTNBD_TEST_TOKEN=<token of the test>` in its
/// environment, and children inherit it, so even a grandchild that was re-parented or moved to
/// a session of its own (qemu-nbd `--fork`, an export `swiftnbd migrate` launched) can be
/// traced back to the test that caused it by reading `/proc/PID/environ`. A process ID alone
/// could not do that, and suites run in parallel, so "children of the test runner" would not
/// say which test is at fault.
enum ProcessLedger {
    static let variable = "SWIFTNBD_TEST_TOKEN"

    /// The token of the test running in this task; set by `NoLeftoverProcesses`.
    @TaskLocal static var token: String?

    /// The environment to give a spawned process: `base` (the runner's own when nil) plus the
    /// current test's token. Spawns outside a scoped test get a token naming no test, which the
    /// end-of-run check in scripts/test.sh still finds.
    static func environment(_ base: [String: String]? = nil) -> [String: String] {
        var env = base ?? ProcessInfo.processInfo.environment
        env[variable] = token ?? "unscoped"
        return env
    }

    /// Tags `process` with the current test's token before `run()`.
    static func tag(_ process: Process) {
        process.environment = environment(process.environment)
    }

    /// Live processes (zombies do not count: they hold nothing) carrying `token`, as
    /// "PID command line" strings.
    static func survivors(of token: String) -> [(pid: Int32, command: String)] {
        let needle = Array("\(variable)=\(token)\0".utf8)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var found: [(Int32, String)] = []
        for entry in entries {
            guard let pid = Int32(entry), pid != getpid() else { continue }
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ"),
                  containsEntry(Array(environ), needle) else { continue }
            if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
               let close = stat.lastIndex(of: ")"),
               stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z") { continue }
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
            let command = String(decoding: cmdline.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            found.append((pid, command.trimmingCharacters(in: .whitespaces)))
        }
        return found
    }

    /// Whether `environ` (NUL-separated entries) holds exactly the entry `needle` (NUL included).
    private static func containsEntry(_ environ: [UInt8], _ needle: [UInt8]) -> Bool {
        var start = 0
        while start < environ.count {
            let end = environ[start...].firstIndex(of: 0) ?? environ.count
            if end - start + 1 == needle.count && environ[start...end].elementsEqual(needle) { return true }
            start = end + 1
        }
        return false
    }
}

/// The trait every interop suite carries: a test fails if a process it started is still alive
/// a few seconds after the test body returned (time for a SIGTERM'd peer to finish exiting),
/// and such a process is killed so it cannot disturb later tests.
struct NoLeftoverProcesses: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        test.isSuite ? nil : self
    }

    func provideScope(for test: Test, testCase: Test.Case?,
                      performing function: @Sendable () async throws -> Void) async throws {
        let token = "\(getpid())-\(UUID().uuidString.prefix(12))"
        try await ProcessLedger.$token.withValue(token) { try await function() }
        var survivors = ProcessLedger.survivors(of: token)
        let deadline = Date().addingTimeInterval(10)
        while !survivors.isEmpty && Date() < deadline {
            try await Task.sleep(nanoseconds: 100_000_000)
            survivors = ProcessLedger.survivors(of: token)
        }
        guard !survivors.isEmpty else { return }
        for survivor in survivors { kill(survivor.pid, SIGKILL) }
        let list = survivors.map { "\($0.pid): \($0.command)" }.joined(separator: "\n")
        Issue.record("processes started by this test outlived it (killed now):\n\(list)", sourceLocation: test.sourceLocation)
    }
}

extension Trait where Self == NoLeftoverProcesses {
    /// See `NoLeftoverProcesses`.
    static var noLeftoverProcesses: Self { Self() }
}
