#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NBDClient
import QMP

/// One `swiftnbd backup` run: checks the directory against the VM, decides full or
/// incremental, sets up QEMU (`FleecingSession`), copies each disk with the copy engine,
/// and records the checkpoint.
struct BackupRun {
    let command: BackupCommand
    private let start = Date()

    init(command: BackupCommand) { self.command = command }

    private func log(_ message: String) {
        if command.verbose { fputs("backup: [\(String(format: "%.3f", Date().timeIntervalSince(start)))] \(message)\n", stderr) }
    }

    func run(started: Date) throws -> BackupReport {
        let directory = command.directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let qmp = try QMPClient(unixPath: command.qmp, timeout: min(command.timeout, 10))
        defer { qmp.close() }

        let identity = BackupManifest.VMIdentity(
            name: try qmp.execute("query-name")["name"]?.stringValue ?? "",
            uuid: try qmp.execute("query-uuid")["UUID"]?.stringValue ?? "")
        let nodes = try BackupNodeInfo.all(qmp)
        for node in command.disks {
            guard let info = nodes[node] else {
                throw BackupFailure("the VM has no block node '\(node)' (named nodes: \(nodes.keys.sorted().joined(separator: ", ")))")
            }
            guard info.driver == "qcow2" else {
                throw BackupFailure("disk \(node) is a \(info.driver) node: checkpoints are persistent dirty bitmaps, which QEMU keeps in qcow2 images only")
            }
        }

        try Self.refuseLeftovers(qmp, nodes: nodes)
        var manifest = try BackupManifest.load(directory: directory)
        let isFull: Bool
        if let existing = manifest {
            try Self.check(existing, directory: directory, identity: identity, disks: command.disks, nodes: nodes)
            isFull = command.full || existing.checkpoints.isEmpty
        } else {
            if command.incremental {
                throw BackupFailure("\(directory) holds no backup chain yet (no \(BackupManifest.fileName)): the first backup is a full one")
            }
            isFull = true
            manifest = BackupManifest(chain: Self.randomChainID(), vm: identity,
                                      disks: command.disks.map { BackupManifest.Disk(node: $0, size: nodes[$0]?.size ?? 0) })
        }
        guard var manifest else { throw BackupFailure("internal: no manifest") }
        if command.incremental && isFull {
            throw BackupFailure("--incremental: \(directory) has no checkpoint to continue from")
        }
        let previous = isFull ? nil : manifest.checkpoints.last
        if let previous { try Self.checkCheckpoint(previous, nodes: nodes, disks: command.disks) }
        let sequence = (manifest.checkpoints.last?.sequence ?? -1) + 1
        let kind = isFull ? "full" : "incremental"
        let newBitmap = BackupManifest.bitmapName(chain: manifest.chain, sequence: sequence)
        for node in command.disks where nodes[node]?.bitmap(newBitmap) != nil {
            throw BackupFailure("disk \(node) already has a bitmap '\(newBitmap)' (left by a backup that was killed?); "
                + "remove it in QEMU (block-dirty-bitmap-remove\(previous.map { ", after merging it into \($0.bitmap) and enabling that" } ?? ""))")
        }

        let scratch = command.scratchDirectory ?? directory
        let plans = command.disks.enumerated().map { index, node in
            FleecingSession.Disk(node: node, index: index, size: nodes[node]?.size ?? 0, newBitmap: newBitmap,
                                 previousBitmap: previous?.bitmap,
                                 granularity: command.granularity,
                                 scratchFile: "\(scratch)/.fleece-\(node)-\(getpid()).qcow2")
        }
        // QEMU's NBD server listens on a Unix socket only this user can reach; its path must
        // stay short (108 bytes), hence /tmp rather than the backup directory.
        var template = Array("/tmp/swiftnbd-backup-XXXXXX".utf8CString)
        guard let socketDirectoryPointer = mkdtemp(&template) else {
            throw BackupFailure("cannot create a directory for the NBD socket: \(String(cString: strerror(errno)))")
        }
        let socketDirectory = String(cString: socketDirectoryPointer)
        defer { rmdir(socketDirectory) }
        let socket = socketDirectory + "/nbd.sock"
        defer { unlink(socket) }

        log("\(kind) backup #\(sequence) of \(command.disks.joined(separator: ", ")) into \(directory)")
        let session = FleecingSession(qmp: qmp, log: log)
        var parts: [String] = []
        var renamed: [String] = []
        var superseded: String?
        var images: [BackupManifest.DiskImage] = []
        var diskReports: [BackupReport.Disk] = []
        let checkpointTime = Date()
        // Ctrl-C or SIGTERM cuts the exports off; the copy then fails and everything is undone.
        let interrupted = InterruptFlag()
        let watcher = MigrateInterruptWatcher { [session] in
            interrupted.set()
            session.abortExports(plans)
        }
        defer { watcher.stop() }
        do {
            try session.begin(plans, tlsCreds: command.tlsCreds, tlsDirectory: command.tlsCertificates,
                              socket: socket, timeout: command.timeout)
            if interrupted.isSet { throw BackupFailure("interrupted") }
            let refreshed = try BackupNodeInfo.all(qmp)
            for plan in plans {
                let granularity = refreshed[plan.node]?.bitmap(newBitmap)?.granularity ?? 0
                let image = BackupManifest.imageName(node: plan.node, sequence: sequence, kind: kind)
                let part = "\(directory)/\(image).part"
                try FileManager.default.createDirectory(atPath: "\(directory)/\(plan.node)", withIntermediateDirectories: true)
                let uri = NBDURI(transport: .unix(path: socket), exportName: plan.exportName, tlsPolicy: .require,
                                 tlsCertificates: command.tlsCertificates, tlsHostname: command.tlsHostname)
                var job = CopyJob(source: uri.description, destination: part)
                job.connections = command.connections
                job.flush = true
                let backing = previous?.disks.first { $0.node == plan.node }?.image
                if let previousBitmap = plan.previousBitmap, let backing {
                    job.dirtyBitmap = previousBitmap
                    job.backing = "\(directory)/\(backing)"
                } else {
                    job.outputFormat = .qcow2
                }
                log("copying \(plan.node) → \(image)" + (job.dirtyBitmap.map { " (dirty in \($0))" } ?? ""))
                unlink(part)
                parts.append(part)
                let outcome = try job.run()
                let s = outcome.statistics
                images.append(BackupManifest.DiskImage(
                    node: plan.node, image: image, backing: job.dirtyBitmap == nil ? nil : backing, granularity: granularity,
                    bytesRead: s.bytesRead, bytesWritten: s.bytesWritten, bytesZeroed: s.bytesZeroed, bytesSkipped: s.bytesSkipped,
                    seconds: outcome.seconds))
                diskReports.append(BackupReport.Disk(node: plan.node, image: image, size: outcome.size, bytesRead: s.bytesRead,
                                                     bytesWritten: s.bytesWritten, bytesZeroed: s.bytesZeroed,
                                                     bytesSkipped: s.bytesSkipped, seconds: outcome.seconds))
            }
            try session.checkJobsRunning(plans)
            // How much old data QEMU had to keep for the point-in-time view while the guest
            // wrote (the scratch overlays' size): what --scratch-dir must have room for.
            for (index, plan) in plans.enumerated() where index < diskReports.count {
                var info = stat()
                if stat(plan.scratchFile, &info) == 0 { diskReports[index].scratchBytes = UInt64(clamping: info.st_size) }
            }
            // Images and manifest are put in place while QEMU still holds the new checkpoint, so
            // that a failure here still rolls the bitmaps back (see the catch below).
            for (part, image) in zip(parts, images) {
                let final = "\(directory)/\(image.image)"
                guard rename(part, final) == 0 else {
                    throw BackupFailure("cannot rename \(part): \(String(cString: strerror(errno)))")
                }
                renamed.append(final)
            }
            let finished = Date()
            if isFull {
                manifest.vm = identity
                manifest.disks = command.disks.map { BackupManifest.Disk(node: $0, size: nodes[$0]?.size ?? 0) }
            }
            superseded = manifest.checkpoints.last?.bitmap
            manifest.checkpoints.append(BackupManifest.Checkpoint(
                sequence: sequence, kind: kind, bitmap: newBitmap, started: BackupManifest.timestamp(checkpointTime),
                finished: BackupManifest.timestamp(finished), seconds: finished.timeIntervalSince(started), disks: images))
            try manifest.save(directory: directory)
        } catch {
            session.finish(success: false)
            for part in parts + renamed { unlink(part) }
            var message = interrupted.isSet ? "interrupted (\(error))" : "\(error)"
            if !session.cleanupProblems.isEmpty {
                message += "; cleanup problems: " + session.cleanupProblems.joined(separator: "; ")
            }
            throw BackupFailure(message)
        }
        session.finish(success: true)
        for problem in session.cleanupProblems { fputs("backup: warning: cleanup: \(problem)\n", stderr) }
        // The superseded checkpoint's bitmap has done its job (it was copied, or a new full
        // backup replaces its chain); keeping it would only cost QEMU memory and image space.
        if let superseded {
            for node in command.disks where nodes[node]?.bitmap(superseded) != nil {
                do {
                    try qmp.execute("block-dirty-bitmap-remove", ["node": .string(node), "name": .string(superseded)])
                } catch {
                    fputs("backup: warning: could not remove the superseded bitmap \(superseded) of \(node): \(error)\n", stderr)
                }
            }
        }
        return BackupReport(directory: directory, kind: kind, sequence: sequence, bitmap: newBitmap,
                            seconds: Date().timeIntervalSince(started), disks: diskReports)
    }

    /// Objects named like ours mean another backup runs now, or one was killed (SIGKILL,
    /// a crash) before its cleanup: either way not ours to remove.
    static func refuseLeftovers(_ qmp: QMPClient, nodes: [String: BackupNodeInfo]) throws {
        var found = nodes.keys.filter { $0.hasPrefix("swiftnbd-fleece-") }.sorted().map { "node \($0)" }
        let jobs = try qmp.execute("query-block-jobs").arrayValue ?? []
        found += jobs.compactMap { $0["device"]?.stringValue }.filter { $0.hasPrefix("swiftnbd-backup-") }.map { "job \($0)" }
        let exports = try qmp.execute("query-block-exports").arrayValue ?? []
        found += exports.compactMap { $0["id"]?.stringValue }.filter { $0.hasPrefix("swiftnbd-export-") }.map { "export \($0)" }
        guard found.isEmpty else {
            throw BackupFailure("the VM holds \(found.joined(separator: ", ")) of a backup that has not finished: another backup is running, "
                + "or one was killed before cleaning up (then remove them with block-export-del, block-job-cancel, blockdev-del and nbd-server-stop)")
        }
    }

    /// The directory must belong to this VM and these disks, at their current sizes.
    static func check(_ manifest: BackupManifest, directory: String, identity: BackupManifest.VMIdentity,
                      disks: [String], nodes: [String: BackupNodeInfo]) throws {
        guard manifest.vm == identity else {
            throw BackupFailure("\(directory) holds backups of VM '\(manifest.vm.name)' (uuid \(manifest.vm.uuid)), "
                + "not of this VM '\(identity.name)' (uuid \(identity.uuid))")
        }
        let recorded = manifest.disks.map(\.node)
        guard Set(recorded) == Set(disks) else {
            throw BackupFailure("\(directory) backs up disks \(recorded.joined(separator: ", ")), but this run names \(disks.joined(separator: ", "))")
        }
        for disk in manifest.disks {
            let now = nodes[disk.node]?.size ?? 0
            guard now == disk.size else {
                throw BackupFailure("disk \(disk.node) is now \(now) bytes, the backup chain has \(disk.size): a resized disk needs a new full backup (--full)")
            }
        }
    }

    /// The previous checkpoint's bitmap must be there, consistent, ours and idle on every disk.
    static func checkCheckpoint(_ checkpoint: BackupManifest.Checkpoint, nodes: [String: BackupNodeInfo], disks: [String]) throws {
        for node in disks {
            guard let recorded = checkpoint.disks.first(where: { $0.node == node }) else {
                throw BackupFailure("checkpoint \(checkpoint.sequence) has no image of disk \(node)")
            }
            guard let bitmap = nodes[node]?.bitmap(checkpoint.bitmap) else {
                throw BackupFailure("checkpoint \(checkpoint.sequence) is lost: disk \(node) has no bitmap '\(checkpoint.bitmap)' "
                    + "(QEMU was started from another image, or the bitmap was removed); take a full backup with --full")
            }
            guard !bitmap.inconsistent else {
                throw BackupFailure("checkpoint \(checkpoint.sequence) is unusable: bitmap '\(checkpoint.bitmap)' of \(node) is inconsistent "
                    + "(QEMU stopped without saving it); take a full backup with --full")
            }
            guard bitmap.granularity == recorded.granularity else {
                throw BackupFailure("bitmap '\(checkpoint.bitmap)' of \(node) has granularity \(bitmap.granularity) bytes, "
                    + "but checkpoint \(checkpoint.sequence) was made with \(recorded.granularity): it is not this chain's bitmap; take a full backup with --full")
            }
            guard bitmap.recording, !bitmap.busy else {
                throw BackupFailure("bitmap '\(checkpoint.bitmap)' of \(node) is \(bitmap.busy ? "in use by another job" : "not recording"): "
                    + "it does not hold every write since checkpoint \(checkpoint.sequence); take a full backup with --full")
            }
        }
    }

    static func randomChainID() -> String {
        var generator = SystemRandomNumberGenerator()
        return String(generator.next() as UInt32, radix: 16).leftPadded(to: 8)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// Set once from the interrupt watcher's thread, read by the backup's.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
