import ArgumentParser
import Foundation
import Logging
import Migration
import QMP

/// `swiftnbd migrate`: live-migrates a VM between two QEMUs on hosts without shared storage.
/// SwiftNBD exports each destination image over TLS, the source mirrors into it, then RAM
/// moves over a TLS migration stream with the safe switchover ordering (docs/migration.md §3).
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Live-migrate a QEMU VM and its disks to a destination QEMU over NBD+TLS.",
        discussion: """
            The destination QEMU must be started with -incoming defer and open each destination image \
            itself (raw, or qcow2 with --disk node=image,format=qcow2), like the source but paused. This command exports those images with TLS, \
            mirrors the source disks into them, migrates RAM with TLS and pause-before-switchover, \
            finishes the mirrors at pre-switchover, stops the exports and resumes the destination. \
            On any failure before the switchover the source keeps running and the destination is shut down.

            Progress goes to stderr while it runs (--no-progress silences it, --progress-fd N adds JSON lines). \
            When RAM does not converge, the measured figures and the remedies are printed, and --converge \
            decides: wait (until --timeout), abort (at once, cleanly) or postcopy (switch). In post-copy the \
            destination runs the guest while the rest of RAM follows; if the stream breaks, both sides pause \
            and the migration is recovered (migrate-recover, migrate with resume).

            Example:
              swiftnbd migrate --source-qmp /run/src.qmp --destination-qmp /run/dst.qmp \\
                --disk vda-format=/images/dst.raw --tls-certificates /etc/pki/qemu
            """
    )

    @Option(name: .customLong("source-qmp"), help: ArgumentHelp("QMP Unix socket of the source QEMU.", valueName: "path"))
    var sourceQMP: String

    @Option(name: .customLong("destination-qmp"), help: ArgumentHelp("QMP Unix socket of the destination QEMU.", valueName: "path"))
    var destinationQMP: String

    @Option(name: .customLong("disk"), help: ArgumentHelp(
        "A disk to move: the source block node and the destination image path, optionally with the image's format (raw, the default, or qcow2) (repeatable).",
        valueName: "node=image[,format=qcow2]"))
    var disks: [String] = []

    @Option(name: .customLong("tls-certificates"), help: ArgumentHelp(
        "x509 directory in QEMU's layout (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem).", valueName: "dir"))
    var tlsCertificates: String

    @OptionGroup(title: "qcow2 metadata cache (qcow2 destinations)") var qcow2Cache: Qcow2CacheArguments

    @Option(name: .customLong("tls-authz"), help: ArgumentHelp("Only accept NBD clients whose certificate DN is this (repeatable).", valueName: "dn"))
    var tlsAuthz: [String] = []

    @Option(name: .customLong("source-tls-creds"), help: ArgumentHelp(
        "Id of an existing tls-creds-x509 (endpoint=client) object in the source; default: create one from --tls-certificates.", valueName: "id"))
    var sourceTLSCreds: String?

    @Option(name: .customLong("destination-tls-creds"), help: ArgumentHelp(
        "Id of an existing tls-creds-x509 (endpoint=server) object in the destination; default: create one from --tls-certificates.", valueName: "id"))
    var destinationTLSCreds: String?

    @Option(help: ArgumentHelp("Address of the destination side, for the NBD exports and the migration stream.", valueName: "address"))
    var host = "127.0.0.1"

    @Option(name: .customLong("nbd-port"), help: ArgumentHelp("NBD port for each disk, in order (default: free ports).", valueName: "port"))
    var nbdPorts: [Int] = []

    @Option(name: .customLong("migration-port"), help: ArgumentHelp("Port of the incoming migration listener (default: a free port).", valueName: "port"))
    var migrationPort: Int?

    @Option(name: .customLong("export-server"), help: ArgumentHelp(
        "Who serves the destination images: swiftnbd (in this process), swiftnbd-serve (a `swiftnbd serve` child), qemu-nbd, or destination-qemu (the destination's own NBD server; for comparison).",
        valueName: "server"))
    var exportServer: ExportServer = .swiftnbd

    @Option(name: .customLong("max-bandwidth"), help: ArgumentHelp("RAM migration bandwidth limit in bytes/s (suffixes K, M, G).", valueName: "bytes"))
    var maxBandwidth: ByteCount?

    @Option(name: .customLong("mirror-speed"), help: ArgumentHelp("Disk mirror speed limit in bytes/s (suffixes K, M, G).", valueName: "bytes"))
    var mirrorSpeed: ByteCount?

    @Option(name: .customLong("downtime-limit"), help: ArgumentHelp("Maximum downtime QEMU aims for, in milliseconds.", valueName: "ms"))
    var downtimeLimit: Int64?

    @Flag(name: .customLong("auto-converge"), help: "Throttle the guest's vCPUs if RAM does not converge.")
    var autoConverge = false

    @Option(name: .customLong("postcopy-after"), help: ArgumentHelp("Switch to post-copy after this many RAM iterations.", valueName: "n"))
    var postcopyAfter: Int?

    @Option(name: .customLong("multifd-channels"), help: ArgumentHelp("Migrate RAM over this many parallel channels.", valueName: "n"))
    var multifdChannels: Int?

    @Option(help: ArgumentHelp(
        "When RAM does not converge (the guest dirties memory as fast as the stream carries it, for several passes): wait (until --timeout, then abort with the diagnosis), abort (cleanly, at once), or postcopy (switch to post-copy).",
        valueName: "policy"))
    var converge: MigrationConvergePolicy = .wait

    @Option(name: .customLong("postcopy-bandwidth"), help: ArgumentHelp("Bandwidth limit for the pages sent during post-copy, bytes/s (default: unlimited).", valueName: "bytes"))
    var postcopyBandwidth: ByteCount?

    @Option(name: .customLong("postcopy-recover-attempts"), help: ArgumentHelp("How often a broken post-copy stream is reconnected before giving up (default 3).", valueName: "n"))
    var postcopyRecoverAttempts = 3

    @Option(name: .customLong("migration-via"), help: ArgumentHelp(
        "Where the source connects for the migration stream, when a tunnel or relay forwards it to the destination's listener (--host, --migration-port).", valueName: "host:port"))
    var migrationVia: String?

    @Option(name: .customLong("xbzrle-cache"), help: ArgumentHelp("Delta-compress re-sent pages (xbzrle) with a cache of this size (suffixes K, M, G).", valueName: "bytes"))
    var xbzrleCache: ByteCount?

    @Option(name: .customLong("multifd-compression"), help: ArgumentHelp("Compress the multifd channels: zlib or zstd (needs --multifd-channels).", valueName: "method"))
    var multifdCompression: String?

    @Flag(inversion: .prefixedNo, help: "Show progress on stderr (default: on; a redrawn line on a terminal, plain lines otherwise).")
    var progress = true

    @Option(name: .customLong("progress-fd"), help: ArgumentHelp("Also write each progress snapshot as a JSON line to this file descriptor.", valueName: "fd"))
    var progressFD: Int32?

    @Option(help: ArgumentHelp("Time limit in seconds for each phase (mirror, RAM, final sync, ...).", valueName: "seconds"))
    var timeout: Double = 600

    @Flag(name: .customLong("no-resume"), help: "Leave the destination paused after the migration.")
    var noResume = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log each step to stderr.")
    var verbose = false

    enum ExportServer: String, ExpressibleByArgument, CaseIterable {
        case swiftnbd
        case swiftnbdServe = "swiftnbd-serve"
        case qemuNBD = "qemu-nbd"
        case destinationQEMU = "destination-qemu"
    }

    /// A byte count with an optional K/M/G/T suffix (powers of 1024).
    struct ByteCount: ExpressibleByArgument {
        var value: Int64
        init?(argument: String) {
            let units: [Character: Int64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
            var text = argument.uppercased()
            if text.hasSuffix("B") { text.removeLast() }
            var multiplier: Int64 = 1
            if let last = text.last, let unit = units[last] {
                multiplier = unit
                text.removeLast()
            }
            guard let number = Int64(text), number >= 0 else { return nil }
            let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
            guard !overflow else { return nil }
            value = product
        }
    }

    func validate() throws {
        guard !disks.isEmpty else { throw ValidationError("give at least one --disk node=image") }
        for disk in disks { _ = try Self.parseDisk(disk) }
        if !nbdPorts.isEmpty && nbdPorts.count != disks.count {
            throw ValidationError("give one --nbd-port per --disk (\(disks.count)), or none")
        }
        for port in nbdPorts + (migrationPort.map { [$0] } ?? []) where !(1...65535).contains(port) {
            throw ValidationError("port \(port) is out of range")
        }
        if let postcopyAfter, postcopyAfter < 1 { throw ValidationError("--postcopy-after must be at least 1") }
        if let multifdChannels, !(1...255).contains(multifdChannels) { throw ValidationError("--multifd-channels must be 1...255") }
        if postcopyAfter != nil && multifdChannels != nil { throw ValidationError("QEMU cannot combine post-copy with multifd") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if converge == .postcopy && multifdChannels != nil { throw ValidationError("--converge postcopy needs post-copy, which QEMU cannot combine with multifd") }
        if let multifdCompression {
            guard ["zlib", "zstd", "none"].contains(multifdCompression) else { throw ValidationError("--multifd-compression must be zlib, zstd or none") }
            guard multifdChannels != nil else { throw ValidationError("--multifd-compression needs --multifd-channels") }
        }
        guard postcopyRecoverAttempts >= 0 else { throw ValidationError("--postcopy-recover-attempts must not be negative") }
        if let migrationVia { _ = try Self.parseAddress(migrationVia) }
        if let progressFD, progressFD < 0 || fcntl(progressFD, F_GETFD) < 0 {
            throw ValidationError("--progress-fd \(progressFD) is not an open file descriptor")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tlsCertificates, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--tls-certificates \(tlsCertificates) is not a directory")
        }
    }

    func makePlan() -> MigrationPlan {
        // validate() already parsed every --disk.
        let parsed = disks.compactMap { try? Self.parseDisk($0) }
        let directory = URL(fileURLWithPath: tlsCertificates).standardizedFileURL.path
        var plan = MigrationPlan(disks: parsed, tlsDirectory: directory,
                                 sourceCredentials: sourceTLSCreds.map { .existing(id: $0) },
                                 destinationCredentials: destinationTLSCreds.map { .existing(id: $0) })
        plan.host = host
        plan.nbdPorts = nbdPorts.isEmpty ? nil : nbdPorts
        plan.migrationPort = migrationPort
        plan.tlsAuthorizedDNs = tlsAuthz
        plan.phaseTimeout = timeout
        plan.resumeDestination = !noResume
        plan.tunables.maxBandwidth = maxBandwidth?.value
        plan.tunables.mirrorSpeed = mirrorSpeed?.value
        plan.tunables.downtimeLimitMilliseconds = downtimeLimit
        plan.tunables.autoConverge = autoConverge
        plan.tunables.postcopyAfterIterations = postcopyAfter
        plan.tunables.multifdChannels = multifdChannels
        plan.tunables.convergePolicy = converge
        plan.tunables.postcopyBandwidth = postcopyBandwidth?.value
        plan.tunables.xbzrleCacheSize = xbzrleCache?.value
        plan.tunables.multifdCompression = multifdCompression
        plan.postcopyRecoveryAttempts = postcopyRecoverAttempts
        plan.migrationConnectAddress = migrationVia.flatMap { try? Self.parseAddress($0) }
        return plan
    }

    /// `host:port` or `[v6]:port`.
    static func parseAddress(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            throw ValidationError("--migration-via wants host:port, got '\(text)'")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ValidationError("--migration-via wants host:port, got '\(text)'") }
        return (host, port)
    }

    /// `node=image[,format=raw|qcow2]`; the image path is made absolute.
    static func parseDisk(_ text: String) throws -> MigrationPlan.Disk {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex, text.index(after: equals) != text.endIndex else {
            throw ValidationError("--disk wants node=image[,format=qcow2], got '\(text)'")
        }
        var image = String(text[text.index(after: equals)...])
        var format = MigrationPlan.Disk.ImageFormat.raw
        if let comma = image.range(of: ",format=", options: .backwards) {
            let name = String(image[comma.upperBound...])
            guard let known = MigrationPlan.Disk.ImageFormat(rawValue: name) else {
                throw ValidationError("--disk format '\(name)' is not raw or qcow2")
            }
            format = known
            image = String(image[..<comma.lowerBound])
        }
        guard !image.isEmpty else { throw ValidationError("--disk wants node=image[,format=qcow2], got '\(text)'") }
        return MigrationPlan.Disk(sourceNode: String(text[..<equals]),
                                  destinationImage: URL(fileURLWithPath: image).standardizedFileURL.path,
                                  destinationFormat: format)
    }

    func makeLauncher(logger: Logger) -> any MigrationExportLauncher {
        switch exportServer {
        case .swiftnbd:
            return InProcessExportLauncher(logger: logger, qcow2Cache: (try? qcow2Cache.options()) ?? .default)
        case .swiftnbdServe:
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            return ProcessExportLauncher(server: .swiftnbd(executable: executable, extraArguments: qcow2Cache.arguments))
        case .qemuNBD:
            return ProcessExportLauncher(server: .qemuNBD)
        case .destinationQEMU:
            return DestinationQEMUExportLauncher()
        }
    }

    func run() throws {
        var logger = Logger(label: "swiftnbd.migrate") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = verbose ? .info : .warning
        let plan = makePlan()
        let outcome: Result<MigrationReport, Error>
        do {
            let source = try QMPClient(unixPath: sourceQMP, timeout: 10)
            let destination = try QMPClient(unixPath: destinationQMP, timeout: 10)
            let orchestrator = MigrationOrchestrator(plan: plan, source: source, destination: destination,
                                                     launcher: makeLauncher(logger: logger), logger: logger)
            let display = MigrateProgressDisplay(stderr: progress, terminal: isatty(STDERR_FILENO) != 0, machineFD: progressFD)
            orchestrator.onProgress = { display.show($0) }
            let interrupts = MigrateInterruptWatcher { orchestrator.requestCancel() }
            defer { interrupts.stop() }
            outcome = Result { try orchestrator.run() }
            display.finish()
        } catch {
            outcome = .failure(error)
        }
        switch outcome {
        case let .success(report):
            print(json ? report.json.description : report.text)
        case let .failure(error):
            if json {
                var failure: [String: QMPValue] = ["status": "failed", "error": .string("\(error)")]
                if let error = error as? MigrationError {
                    failure["error"] = .string(error.message)
                    failure["code"] = .string(error.code.rawValue)
                    failure["phase"] = .string(error.phase.description)
                    failure["cleanup-problems"] = .array(error.cleanup.map(QMPValue.string))
                    if let diagnosis = error.diagnosis { failure["diagnosis"] = diagnosis.json }
                }
                print(QMPValue.object(failure).description)
            } else {
                FileHandle.standardError.write(Data("swiftnbd migrate: \(error)\n".utf8))
            }
            throw ExitCode.failure
        }
    }
}
