import Foundation
import Logging
import QMP

/// Runs a live migration without shared storage through the safe sequence of
/// docs/migration.md §3, and undoes everything it did if any step fails before the
/// switchover: the source keeps running, the destination is torn down, nothing is
/// half-switched.
///
///   exports up → destination listens → mirror every disk to READY → migrate with
///   pause-before-switchover → soft block-job-cancel at pre-switchover (final sync + FLUSH) →
///   job-dismiss, blockdev-del ×2 → migrate-continue → completed → exports stopped → cont.
public final class MigrationOrchestrator: @unchecked Sendable {
    public let plan: MigrationPlan
    public let source: QMPClient
    public let destination: QMPClient
    public let launcher: any MigrationExportLauncher
    let logger: Logger
    let cancelFlag = MigrationCancelFlag()
    /// Called from `run()`'s thread about once per `plan.progressInterval` while waiting.
    public var onProgress: (@Sendable (MigrationProgress) -> Void)?

    // What has been done so far, for the abort path.
    var phase = MigrationPhase.preflight
    var sourceCredentialsID = ""
    var destinationCredentialsID = ""
    var createdSourceObject = false
    var createdDestinationObject = false
    var exports: [any MigrationExport] = []
    var addedStorageNodes: [String] = []
    var addedFormatNodes: [String] = []
    var liveJobs: Set<String> = []
    var migrateStarted = false
    var incomingStarted = false
    var continued = false
    var sourceWasRunning = false
    var postcopyStarted = false
    var exportsStopped = false

    // Progress and convergence.
    var report = MigrationReport(exportServer: "")
    var runStarted = Date()
    var lastSampleTime = Date.distantPast
    var lastDiskDone: Int64 = 0
    var lastDiskSampleTime: Date?
    lazy var convergence = MigrationConvergenceMonitor(tunables: plan.tunables)
    var lastDiagnosis: MigrationConvergenceDiagnosis?
    /// The diagnosis of the latest sample; nil when the rule does not hold right now.
    var currentDiagnosis: MigrationConvergenceDiagnosis?
    var lastRAMSample: MigrationRAMSample?
    /// Where the destination listens, and where the source connects (differs through a relay).
    var listenURI = ""
    var migrationURI = ""
    var postcopyRecoveryAttemptsUsed = 0

    public init(plan: MigrationPlan, source: QMPClient, destination: QMPClient,
                launcher: any MigrationExportLauncher, logger: Logger = Logger(label: "swiftnbd.migrate")) {
        self.plan = plan
        self.source = source
        self.destination = destination
        self.launcher = launcher
        self.logger = logger
    }

    /// Asks a running `run()` to abort at its next wait (e.g. on SIGINT). Thread-safe.
    public func requestCancel() {
        cancelFlag.set()
    }

    public func run() throws -> MigrationReport {
        let started = Date()
        runStarted = started
        report = MigrationReport(exportServer: launcher.name)
        do {
            try plan.validate()
            try preflight()
            try startExports()
            try prepareDestination()
            try mirror()
            try migrate()
            if !exportsStopped { try stopExports() }
            if plan.resumeDestination && !report.destinationResumed { try resumeDestination() }
            deleteCredentialObjects()
            phase = .done
        } catch {
            let failure = describe(error)
            let problems = abort()
            var final = MigrationError(failure.code, failure.message, phase: failure.phase, cleanup: problems)
            final.diagnosis = failure.diagnosis
            throw final
        }
        report.totalSeconds = Date().timeIntervalSince(started)
        return report
    }

    // MARK: - Steps

    private func preflight() throws {
        phase = .preflight
        let sourceStatus = try source.execute("query-status")["status"]?.stringValue ?? "?"
        guard sourceStatus == "running" || sourceStatus == "paused" else {
            throw MigrationError(.preflightFailed, "source VM is \(sourceStatus), expected running or paused", phase: phase)
        }
        sourceWasRunning = sourceStatus == "running"
        let destinationStatus = try destination.execute("query-status")["status"]?.stringValue ?? "?"
        guard destinationStatus == "inmigrate" else {
            throw MigrationError(.preflightFailed,
                                 "destination VM is \(destinationStatus), expected inmigrate (start it with -incoming defer)", phase: phase)
        }
        let nodes = Set((try source.execute("query-named-block-nodes")).arrayValue?.compactMap { $0["node-name"]?.stringValue } ?? [])
        for disk in plan.disks where !nodes.contains(disk.sourceNode) {
            throw MigrationError(.preflightFailed, "source has no block node \(disk.sourceNode) (have: \(nodes.sorted().joined(separator: ", ")))", phase: phase)
        }
        let jobs = try source.execute("query-block-jobs").arrayValue ?? []
        for disk in plan.disks where jobs.contains(where: { $0["device"]?.stringValue == disk.jobID }) {
            throw MigrationError(.preflightFailed, "a block job \(disk.jobID) already exists on the source", phase: phase)
        }
        let migration = try source.execute("query-migrate")["status"]?.stringValue
        if let migration, ["active", "setup", "pre-switchover", "device", "postcopy-active", "cancelling"].contains(migration) {
            throw MigrationError(.preflightFailed, "the source is already migrating (\(migration))", phase: phase)
        }
        sourceCredentialsID = try credentials(plan.sourceCredentials, on: source, endpoint: "client")
        destinationCredentialsID = try credentials(plan.destinationCredentials, on: destination, endpoint: "server")
    }

    /// Uses an existing tls-creds-x509 object or creates one from a directory.
    private func credentials(_ credentials: MigrationPlan.QEMUCredentials, on qmp: QMPClient, endpoint: String) throws -> String {
        switch credentials {
        case let .existing(id):
            return id
        case let .directory(dir):
            let id = "swiftnbd-migrate-tls"
            var arguments: [String: QMPValue] = ["qom-type": "tls-creds-x509", "id": .string(id), "dir": .string(dir), "endpoint": .string(endpoint)]
            if endpoint == "server" { arguments["verify-peer"] = true }
            do {
                try qmp.execute("object-add", arguments)
            } catch {
                throw MigrationError(.preflightFailed, "cannot load TLS credentials from \(dir) on the \(endpoint == "server" ? "destination" : "source"): \(error)", phase: phase)
            }
            if qmp === source { createdSourceObject = true } else { createdDestinationObject = true }
            return id
        }
    }

    private func startExports() throws {
        phase = .exporting
        let context = MigrationExportContext(plan: plan, destination: destination, destinationCredentialsID: destinationCredentialsID)
        for (index, disk) in plan.disks.enumerated() {
            let port = try plan.nbdPorts?[index] ?? MigrationNetwork.freePort(host: plan.host)
            logger.info("exporting \(disk.destinationImage) as \(disk.exportName) on \(plan.host):\(port) via \(launcher.name)")
            exports.append(try launcher.start(disk: disk, port: port, context: context))
        }
    }

    private func capabilities(_ names: [String]) -> QMPValue {
        .array(names.map { ["capability": .string($0), "state": true] })
    }

    private var sharedCapabilities: [String] {
        var names: [String] = []
        if plan.tunables.multifdChannels != nil { names.append("multifd") }
        if plan.mayUsePostcopy { names.append("postcopy-ram") }
        return names
    }

    /// Parameters both sides must agree on.
    private var sharedParameters: [String: QMPValue] {
        var parameters: [String: QMPValue] = [:]
        if let channels = plan.tunables.multifdChannels { parameters["multifd-channels"] = .int(Int64(channels)) }
        if let compression = plan.tunables.multifdCompression { parameters["multifd-compression"] = .string(compression) }
        return parameters
    }

    private func prepareDestination() throws {
        phase = .preparingDestination
        try destination.execute("migrate-set-capabilities", ["capabilities": capabilities(["events", "late-block-activate"] + sharedCapabilities)])
        var parameters = sharedParameters
        parameters["tls-creds"] = .string(destinationCredentialsID)
        try destination.execute("migrate-set-parameters", parameters)
        let port = try plan.migrationPort ?? MigrationNetwork.freePort(host: plan.host)
        incomingStarted = true
        listenURI = plan.migrationURI(port: port)
        try destination.execute("migrate-incoming", ["uri": .string(listenURI)])
        migrationURI = plan.migrationConnectAddress.map { MigrationPlan.tcpURI(host: $0.host, port: $0.port) } ?? listenURI
    }

    private func mirror() throws {
        phase = .mirroring
        for (disk, export) in zip(plan.disks, exports) {
            let server: QMPValue = export.host.contains("/")
                ? ["type": "unix", "path": .string(export.host)]
                : ["type": "inet", "host": .string(export.host), "port": .string(String(export.port))]
            try source.execute("blockdev-add", [
                "driver": "nbd", "node-name": .string(disk.storageNode), "server": server,
                "export": .string(export.exportName), "tls-creds": .string(sourceCredentialsID),
            ])
            addedStorageNodes.append(disk.storageNode)
            try source.execute("blockdev-add", ["driver": "raw", "node-name": .string(disk.formatNode), "file": .string(disk.storageNode)])
            addedFormatNodes.append(disk.formatNode)
        }
        let mirrorStart = Date()
        for disk in plan.disks {
            var arguments: [String: QMPValue] = [
                "job-id": .string(disk.jobID), "device": .string(disk.sourceNode), "target": .string(disk.formatNode),
                "sync": "full", "copy-mode": "background", "auto-finalize": true, "auto-dismiss": false,
            ]
            if let speed = plan.tunables.mirrorSpeed { arguments["speed"] = .int(speed) }
            try source.execute("blockdev-mirror", arguments)
            liveJobs.insert(disk.jobID)
        }
        var pending = Set(plan.disks.map(\.jobID))
        while !pending.isEmpty {
            let event = try wait(on: source, "BLOCK_JOB_READY for \(pending.sorted().joined(separator: ", "))", poll: { [self] in
                _ = try sample()
            }) {
                ["BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_ERROR"].contains($0.name)
                    && pending.contains($0.data["device"]?.stringValue ?? "")
            }
            let job = event.data["device"]?.stringValue ?? "?"
            guard event.name == "BLOCK_JOB_READY" else {
                if event.name != "BLOCK_JOB_ERROR" { liveJobs.remove(job) }
                throw MigrationError(.mirrorFailed, "mirror \(job) ended before READY: \(event)", phase: phase)
            }
            pending.remove(job)
            // `pending` holds only this plan's job ids, so the lookup finds the disk; a
            // mismatch would be a QMP peer naming a job twice, an error rather than a trap.
            guard let index = plan.disks.firstIndex(where: { $0.jobID == job }), exports.indices.contains(index) else {
                throw MigrationError(.mirrorFailed, "QEMU reported READY for an unknown mirror job \(job)", phase: phase)
            }
            let disk = plan.disks[index]
            let export = exports[index]
            report.disks.append(MigrationReport.Disk(
                sourceNode: disk.sourceNode, exportName: disk.exportName, endpoint: export.host.contains(":") ? "[\(export.host)]:\(export.port)" : "\(export.host):\(export.port)",
                bulkBytes: event.data["len"]?.intValue ?? 0, bulkSeconds: Date().timeIntervalSince(mirrorStart), totalBytes: 0))
            logger.info("mirror \(job) READY after \(String(format: "%.3f", Date().timeIntervalSince(mirrorStart))) s")
        }
        report.mirrorSeconds = Date().timeIntervalSince(mirrorStart)
    }

    private func migrate() throws {
        phase = .migrating
        let migrationStart = Date()
        var names = ["events", "pause-before-switchover"] + sharedCapabilities
        if plan.tunables.autoConverge { names.append("auto-converge") }
        if plan.tunables.xbzrleCacheSize != nil { names.append("xbzrle") }
        try source.execute("migrate-set-capabilities", ["capabilities": capabilities(names)])
        var parameters = sharedParameters
        parameters["tls-creds"] = .string(sourceCredentialsID)
        if let bandwidth = plan.tunables.maxBandwidth { parameters["max-bandwidth"] = .int(bandwidth) }
        if let downtime = plan.tunables.downtimeLimitMilliseconds { parameters["downtime-limit"] = .int(downtime) }
        if let bandwidth = plan.tunables.postcopyBandwidth { parameters["max-postcopy-bandwidth"] = .int(bandwidth) }
        if let cache = plan.tunables.xbzrleCacheSize { parameters["xbzrle-cache-size"] = .int(cache) }
        try source.execute("migrate-set-parameters", parameters)
        try source.execute("migrate", ["uri": .string(migrationURI)])
        migrateStarted = true

        // RAM pre-copy until QEMU parks in pre-switchover; on the way, watch convergence and
        // start post-copy when asked to.
        let parked: QMPEvent
        do {
            parked = try wait(on: source, "MIGRATION pre-switchover", poll: { [self] in try watchPrecopy() }) { event in
                guard event.name == "MIGRATION", let status = event.data["status"]?.stringValue else { return false }
                return ["pre-switchover", "failed", "cancelled"].contains(status)
            }
        } catch var error as MigrationError where error.code == .timedOut {
            error.message += "\n" + stalledPrecopyExplanation()
            error.diagnosis = lastDiagnosis ?? convergence.diagnosis()
            throw error
        }
        if parked.data["status"]?.stringValue != "pre-switchover" {
            throw MigrationError(.migrationFailed, "migration \(parked.data["status"] ?? "?") before switchover: \(migrationFailureDetail())", phase: phase)
        }
        if let sample = try? MigrationRAMSample(queryMigrate: source.execute("query-migrate", timeout: 10)) { report.absorb(sample) }
        report.postcopy = postcopyStarted

        // The guest is stopped and the disks still active: the only point where the mirror can
        // still write and the guest cannot. A soft cancel of a READY mirror copies what is left,
        // flushes the target and completes without pivoting.
        phase = .finalSync
        let syncStart = Date()
        for disk in plan.disks {
            try source.execute("block-job-cancel", ["device": .string(disk.jobID)])
        }
        var pending = Set(plan.disks.map(\.jobID))
        while !pending.isEmpty {
            let event = try wait(on: source, "BLOCK_JOB_COMPLETED for \(pending.sorted().joined(separator: ", "))") {
                ($0.name == "BLOCK_JOB_COMPLETED" || $0.name == "BLOCK_JOB_CANCELLED")
                    && pending.contains($0.data["device"]?.stringValue ?? "")
            }
            let job = event.data["device"]?.stringValue ?? "?"
            pending.remove(job)
            liveJobs.remove(job)
            try source.execute("job-dismiss", ["id": .string(job)])
            if event.name != "BLOCK_JOB_COMPLETED" || event.data["error"] != nil {
                throw MigrationError(.mirrorFailed, "final sync of \(job) failed: \(event)", phase: phase)
            }
            let node = plan.disks.first { $0.jobID == job }?.sourceNode
            if let index = report.disks.firstIndex(where: { $0.sourceNode == node }) {
                report.disks[index].totalBytes = event.data["offset"]?.intValue ?? 0
            }
        }
        report.finalSyncSeconds = Date().timeIntervalSince(syncStart)
        try removeMirrorNodes()

        phase = .switchover
        try source.execute("migrate-continue", ["state": "pre-switchover"])
        continued = true
        if postcopyStarted {
            try finishPostcopy()
        } else {
            try waitForCompletion(on: source, side: "source")
            try waitForCompletion(on: destination, side: "destination")
        }
        report.ramMigrationSeconds = Date().timeIntervalSince(migrationStart)
        report.finish(with: MigrationRAMSample(queryMigrate: try source.execute("query-migrate")))
    }

    /// Closes the NBD connections while both VMs are paused: format node, then NBD node.
    private func removeMirrorNodes() throws {
        while let node = addedFormatNodes.popLast() {
            try source.execute("blockdev-del", ["node-name": .string(node)])
        }
        while let node = addedStorageNodes.popLast() {
            try source.execute("blockdev-del", ["node-name": .string(node)])
        }
    }

    private func waitForCompletion(on qmp: QMPClient, side: String) throws {
        let event = try wait(on: qmp, "\(side) MIGRATION completed") {
            guard $0.name == "MIGRATION", let status = $0.data["status"]?.stringValue else { return false }
            return ["completed", "failed", "cancelled"].contains(status)
        }
        if event.data["status"]?.stringValue != "completed" {
            let detail = side == "source" ? migrationFailureDetail() : ""
            throw MigrationError(.migrationFailed, "\(side) migration \(event.data["status"] ?? "?") \(detail)", phase: phase)
        }
    }

    func migrationFailureDetail() -> String {
        guard let info = try? source.execute("query-migrate", timeout: 5) else { return "" }
        return info["error-desc"]?.stringValue ?? ""
    }

    func stopExports() throws {
        phase = .stoppingExports
        exportsStopped = true
        let start = Date()
        var failures: [String] = []
        while let export = exports.popLast() {
            do { try export.stop() } catch { failures.append("\(error)") }
        }
        report.exportStopSeconds = Date().timeIntervalSince(start)
        if !failures.isEmpty {
            throw MigrationError(.exportFailed, failures.joined(separator: "; "), phase: phase)
        }
    }

    func resumeDestination() throws {
        phase = .resuming
        do {
            try destination.execute("cont")
            _ = try wait(on: destination, "RESUME on the destination") { $0.name == "RESUME" }
        } catch {
            throw MigrationError(.resumeFailed, "\(error)", phase: phase)
        }
        report.destinationResumed = true
    }

    private func deleteCredentialObjects() {
        if createdSourceObject { _ = try? source.execute("object-del", ["id": .string(sourceCredentialsID)], timeout: 10) }
        if createdDestinationObject { _ = try? destination.execute("object-del", ["id": .string(destinationCredentialsID)], timeout: 10) }
        createdSourceObject = false
        createdDestinationObject = false
    }

    // MARK: - Waiting

    /// Waits for an event on `qmp` in short slices, so that a cancel request, the phase time
    /// limit, or the other QEMU going away are noticed promptly. `poll` runs once per slice.
    func wait(on qmp: QMPClient, _ what: String, poll: () throws -> Void = {},
                      until predicate: (QMPEvent) -> Bool) throws -> QMPEvent {
        let deadline = Date().addingTimeInterval(plan.phaseTimeout)
        while true {
            if cancelFlag.isSet { throw MigrationError(.interrupted, "interrupted while waiting for \(what)", phase: phase) }
            for (side, client) in [("source", source), ("destination", destination)] where !client.isConnected {
                throw MigrationError(.migrationFailed, "lost the \(side) QMP connection (QEMU exited?) while waiting for \(what)", phase: phase)
            }
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { throw MigrationError(.timedOut, "no \(what) within \(plan.phaseTimeout) s", phase: phase) }
            do {
                return try qmp.waitForEvent(timeout: min(0.2, remaining), what, where: predicate)
            } catch let error as QMPError where error.code == .timedOut {
                try poll()
            }
        }
    }

    // MARK: - Abort

    private func describe(_ error: Error) -> MigrationError {
        if let error = error as? MigrationError { return error }
        if let error = error as? QMPError {
            let code: MigrationError.Code = phase == .mirroring ? .mirrorFailed : (phase < .mirroring ? .preflightFailed : .migrationFailed)
            return MigrationError(error.code == .timedOut ? .timedOut : code, "\(error)", phase: phase)
        }
        return MigrationError(.migrationFailed, "\(error)", phase: phase)
    }

    /// Undoes what was done, best effort, and returns what could not be undone. Before
    /// `migrate-continue` the source is brought back to its previous state and the
    /// destination is shut down; after it, the source owns the only consistent disk, so it
    /// is resumed if the destination did not take over.
    private func abort() -> [String] {
        var problems: [String] = []
        func attempt(_ what: String, _ body: () throws -> Void) {
            do { try body() } catch { problems.append("\(what): \(error)") }
        }
        logger.warning("aborting migration during \(phase)")
        let sourceCompleted = continued && ((try? source.execute("query-migrate", timeout: 5))?["status"]?.stringValue == "completed")
        let destinationFinished = ((try? destination.execute("query-migrate", timeout: 5))?["status"]?.stringValue == "completed")

        if continued && postcopyStarted && !(sourceCompleted && destinationFinished) {
            // After the switchover into post-copy the destination may have run the guest, and
            // the source no longer has its latest RAM: resuming the source or quitting the
            // destination would lose the VM. Only our own exports are stopped.
            while let export = exports.popLast() {
                attempt("stopping export \(export.exportName)") { try export.stop() }
            }
            let status = (try? source.execute("query-migrate", timeout: 5))?["status"]?.stringValue ?? "?"
            if status == "postcopy-active" {
                problems.append("post-copy is still running (source \(status)); neither VM was touched: QEMU finishes on its own"
                                + (report.destinationResumed ? "" : ", then `cont` the destination"))
            } else if status != "completed" {
                problems.append("post-copy had started (source \(status)); neither VM was touched. " + manualPostcopyRecovery())
            }
            deleteCredentialObjects()
            return problems
        }
        if migrateStarted && !sourceCompleted {
            attempt("migrate_cancel") { try source.execute("migrate_cancel", timeout: 10) }
            _ = try? source.waitForEvent(timeout: 10, "MIGRATION cancelled") {
                $0.name == "MIGRATION" && ["cancelled", "failed", "completed"].contains($0.data["status"]?.stringValue ?? "")
            }
        }
        for job in liveJobs.sorted() {
            attempt("block-job-cancel \(job)") { try source.execute("block-job-cancel", ["device": .string(job), "force": true], timeout: 10) }
            _ = try? source.waitForEvent(timeout: 15, "end of \(job)") {
                ["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED"].contains($0.name) && $0.data["device"]?.stringValue == job
            }
            _ = try? source.execute("job-dismiss", ["id": .string(job)], timeout: 10)
        }
        liveJobs.removeAll()
        while let node = addedFormatNodes.popLast() {
            attempt("blockdev-del \(node)") { try source.execute("blockdev-del", ["node-name": .string(node)], timeout: 10) }
        }
        while let node = addedStorageNodes.popLast() {
            attempt("blockdev-del \(node)") { try source.execute("blockdev-del", ["node-name": .string(node)], timeout: 10) }
        }
        while let export = exports.popLast() {
            attempt("stopping export \(export.exportName)") { try export.stop() }
        }
        if !(continued && destinationFinished) {
            // The destination never ran the guest but may hold a partial copy: once it was
            // told to listen, tear it down so nothing can start it by mistake. A VM we did
            // not get that far with is left alone.
            if incomingStarted && destination.isConnected {
                attempt("quit destination") { try destination.execute("quit", timeout: 10) }
            }
            if sourceWasRunning, source.isConnected {
                let status = (try? source.execute("query-status", timeout: 5))?["status"]?.stringValue
                if status != "running" {
                    attempt("cont on the source (was \(status ?? "?"))") { try source.execute("cont", timeout: 10) }
                }
            }
        }
        deleteCredentialObjects()
        return problems
    }
}

/// A flag set from a signal handler thread and read by the orchestrator.
final class MigrationCancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
