import Foundation

/// Serves each destination image from a child process: `swiftnbd serve` or `qemu-nbd`
/// (the reference external server, docs/migration.md §2), with TLS required and client
/// certificates verified against the plan's CA.
public struct ProcessExportLauncher: MigrationExportLauncher {
    public enum Server: Sendable {
        /// `swiftnbd serve` from this executable path.
        /// `extraArguments` go to `swiftnbd serve` before the image (e.g. cache sizes).
        case swiftnbd(executable: String, extraArguments: [String] = [])
        case qemuNBD
    }

    public let server: Server
    public var readyTimeout: Double = 20

    public init(server: Server) {
        self.server = server
    }

    public var name: String {
        switch server {
        case .swiftnbd: return "swiftnbd serve (child process)"
        case .qemuNBD: return "qemu-nbd"
        }
    }

    func arguments(disk: MigrationPlan.Disk, port: Int, plan: MigrationPlan) -> [String] {
        switch server {
        case let .swiftnbd(executable, extraArguments):
            return [executable, "serve", "--bind", plan.host, "--port", String(port), "--name", disk.exportName,
                    "--tls", "require", "--tls-certificates", plan.tlsDirectory]
                + plan.tlsAuthorizedDNs.flatMap { ["--tls-authz", $0] }
                + extraArguments
                + ["--format", disk.destinationFormat.rawValue, disk.destinationImage]
        case .qemuNBD:
            return ["qemu-nbd", "--object", "tls-creds-x509,id=tls0,dir=\(plan.tlsDirectory),endpoint=server,verify-peer=on",
                    "--tls-creds", "tls0", "-f", disk.destinationFormat.rawValue, "--cache=writeback", "-b", plan.host, "-p", String(port),
                    "-x", disk.exportName, "-t", "-e", "4", disk.destinationImage]
        }
    }

    public func start(disk: MigrationPlan.Disk, port: Int, context: MigrationExportContext) throws -> any MigrationExport {
        let export = try ChildProcessExport(arguments: arguments(disk: disk, port: port, plan: context.plan),
                                            host: context.plan.host, port: port, exportName: disk.exportName)
        try export.waitUntilListening(timeout: readyTimeout)
        return export
    }
}

/// A child process serving one export. Its output goes to a temporary log file, kept for
/// error messages and removed when the export is released.
final class ChildProcessExport: MigrationExport, @unchecked Sendable {
    let host: String
    let port: Int
    let exportName: String
    private let process = Process()
    private let logPath: String
    private let lock = NSLock()
    private var stopped = false

    init(arguments: [String], host: String, port: Int, exportName: String) throws {
        self.host = host
        self.port = port
        self.exportName = exportName
        logPath = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftnbd-migrate-export-\(UUID().uuidString.prefix(8)).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        // The child inherits the spawning thread's signal mask; with SIGTERM blocked it could
        // never be stopped cleanly (qemu-nbd does not unblock it).
        var empty = sigset_t(), saved = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, &saved)
        defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
        // The child has its own copy of the log; Foundation never closes the parent's.
        defer { try? log.close() }
        do {
            try process.run()
        } catch {
            throw MigrationError(.exportFailed, "cannot start \(arguments.joined(separator: " ")): \(error)", phase: .exporting)
        }
    }

    func waitUntilListening(timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if MigrationNetwork.canConnect(host: host, port: port) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let why = process.isRunning ? "not listening on \(host):\(port) after \(timeout) s" : "exited with status \(process.terminationStatus)"
        try? stop()
        throw MigrationError(.exportFailed, "export \(exportName): \(why)\n\(log)", phase: .exporting)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then wait up to 30 s for the server to flush, close and exit
    /// (docs/migration.md §4); SIGKILL only as a last resort, reported as an error.
    func stop() throws {
        lock.lock(); defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw MigrationError(.exportFailed, "export \(exportName) ignored SIGTERM for 30 s and was killed", phase: .stoppingExports)
            }
        }
        process.waitUntilExit()
        let status = process.terminationStatus
        // Exit status 0, or death by the SIGTERM we sent (qemu-nbd reports that way), is clean.
        if !(status == 0 || (process.terminationReason == .uncaughtSignal && status == SIGTERM)) {
            throw MigrationError(.exportFailed, "export \(exportName) exited with status \(status)\n\(log)", phase: .stoppingExports)
        }
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(atPath: logPath)
    }
}
