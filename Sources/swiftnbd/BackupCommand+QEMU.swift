#if canImport(Glibc)
import Glibc
#endif
import Foundation
import QMP
import Qcow2

/// What QEMU says about one block node: its driver, size and dirty bitmaps.
struct BackupNodeInfo {
    struct Bitmap {
        var name: String
        var granularity: UInt64
        var recording: Bool
        var busy: Bool
        /// QEMU stopped without saving it (the image was not closed cleanly): its record of
        /// guest writes has gaps.
        var inconsistent: Bool
    }
    var node: String
    var driver: String
    var size: UInt64
    var bitmaps: [Bitmap]

    func bitmap(_ name: String) -> Bitmap? { bitmaps.first { $0.name == name } }

    /// Every named node of the VM (`query-named-block-nodes flat=true`).
    static func all(_ qmp: QMPClient) throws -> [String: BackupNodeInfo] {
        let reply = try qmp.execute("query-named-block-nodes", ["flat": true])
        var nodes: [String: BackupNodeInfo] = [:]
        for item in reply.arrayValue ?? [] {
            guard let name = item["node-name"]?.stringValue else { continue }
            let size = item["image"]?["virtual-size"]?.intValue ?? 0
            let bitmaps = (item["dirty-bitmaps"]?.arrayValue ?? []).compactMap { b -> Bitmap? in
                guard let bitmapName = b["name"]?.stringValue else { return nil }
                return Bitmap(name: bitmapName, granularity: UInt64(clamping: b["granularity"]?.intValue ?? 0),
                              recording: b["recording"]?.boolValue ?? false, busy: b["busy"]?.boolValue ?? false,
                              inconsistent: b["inconsistent"]?.boolValue ?? false)
            }
            nodes[name] = BackupNodeInfo(node: name, driver: item["drv"]?.stringValue ?? "?", size: UInt64(clamping: size), bitmaps: bitmaps)
        }
        return nodes
    }
}

/// The QEMU side of one pull-mode backup, the way libvirt's pull mode does it: per disk a
/// fleecing overlay (a scratch qcow2 image whose backing is the disk's node) that a
/// `blockdev-backup sync=none` job fills with the old contents of every cluster the guest
/// overwrites (copy-before-write), so reading the overlay gives the disk as it was at the
/// checkpoint while the guest keeps running; one transaction starts all the jobs together with
/// the new checkpoint bitmaps (and freezes the previous ones), so every disk's view and every
/// bitmap start at the same instant. QEMU's NBD server exports the overlays with TLS (and,
/// for an incremental backup, the frozen bitmap).
///
/// Every step that changes QEMU pushes its undo; `finish` runs them in reverse. On success
/// the new bitmaps stay (they are the checkpoint); on failure they are rolled back so that the
/// previous checkpoint still records every write since it was taken.
final class FleecingSession: @unchecked Sendable {
    struct Disk {
        var node: String
        var index: Int
        var size: UInt64
        /// The bitmap this checkpoint starts.
        var newBitmap: String
        /// The bitmap of the previous checkpoint (incremental backups): frozen here, exported.
        var previousBitmap: String?
        var granularity: UInt64?
        var scratchFile: String
        var fleeceNode: String { "swiftnbd-fleece-\(index)" }
        var jobID: String { "swiftnbd-backup-\(index)" }
        var exportID: String { "swiftnbd-export-\(index)" }
        var exportName: String { node }
    }

    private struct Undo {
        var what: String
        var onlyOnFailure: Bool
        var run: () throws -> Void
    }

    let qmp: QMPClient
    let log: (String) -> Void
    private var undo: [Undo] = []
    /// Problems met while undoing (reported, never hiding the original error).
    private(set) var cleanupProblems: [String] = []

    init(qmp: QMPClient, log: @escaping (String) -> Void) {
        self.qmp = qmp
        self.log = log
    }

    /// Sets up fleecing for `disks`, starts QEMU's NBD server on `socket` with TLS and exports
    /// each overlay under its node's name.
    func begin(_ disks: [Disk], tlsCreds: String?, tlsDirectory: String, socket: String, timeout: Double) throws {
        // TLS and the server first: loading the credentials can take a moment, and from the
        // transaction on every guest write costs a copy-before-write.
        var credsID = tlsCreds
        if credsID == nil {
            let id = "swiftnbd-backup-tls"
            log("object-add tls-creds-x509 \(id) (\(tlsDirectory), verify-peer)")
            try qmp.execute("object-add", ["qom-type": "tls-creds-x509", "id": .string(id), "dir": .string(tlsDirectory),
                                           "endpoint": "server", "verify-peer": true])
            push("object-del \(id)") { [qmp] in try qmp.execute("object-del", ["id": .string(id)]) }
            credsID = id
        }
        log("nbd-server-start on \(socket) with TLS")
        do {
            try qmp.execute("nbd-server-start", ["addr": ["type": "unix", "data": ["path": .string(socket)]],
                                                 "tls-creds": .string(credsID ?? "")])
        } catch let error as QMPError where error.message.contains("already running") {
            throw BackupFailure("the VM's NBD server is already running (another backup or a migration?); stop it first")
        }
        push("nbd-server-stop") { [qmp] in try qmp.execute("nbd-server-stop") }
        for disk in disks {
            try Qcow2Creator.create(at: disk.scratchFile, options: Qcow2CreateOptions(size: disk.size))
            push("remove \(disk.scratchFile)") { unlink(disk.scratchFile) }
        }
        for disk in disks {
            log("blockdev-add \(disk.fleeceNode) over \(disk.node)")
            try qmp.execute("blockdev-add", [
                "driver": "qcow2", "node-name": .string(disk.fleeceNode), "backing": .string(disk.node),
                "file": ["driver": "file", "filename": .string(disk.scratchFile)],
            ])
            push("blockdev-del \(disk.fleeceNode)") { [qmp] in
                try qmp.execute("blockdev-del", ["node-name": .string(disk.fleeceNode)])
            }
        }
        var actions: [QMPValue] = []
        for disk in disks {
            if let previous = disk.previousBitmap {
                actions.append(["type": "block-dirty-bitmap-disable", "data": ["node": .string(disk.node), "name": .string(previous)]])
            }
            var add: [String: QMPValue] = ["node": .string(disk.node), "name": .string(disk.newBitmap), "persistent": true]
            if let granularity = disk.granularity { add["granularity"] = .int(Int64(clamping: granularity)) }
            actions.append(["type": "block-dirty-bitmap-add", "data": .object(add)])
            actions.append(["type": "blockdev-backup", "data": [
                "device": .string(disk.node), "target": .string(disk.fleeceNode), "sync": "none", "job-id": .string(disk.jobID),
            ]])
        }
        log("transaction: checkpoint bitmaps and fleecing jobs for \(disks.map(\.node).joined(separator: ", "))")
        try qmp.execute("transaction", ["actions": .array(actions)])
        push("roll back the checkpoint bitmaps", onlyOnFailure: true) { [qmp] in
            try qmp.execute("transaction", ["actions": .array(Self.rollback(disks))])
        }
        push("cancel the fleecing jobs") { [self] in
            for disk in disks { try cancelJob(disk.jobID, timeout: timeout) }
        }

        for disk in disks {
            var arguments: [String: QMPValue] = ["type": "nbd", "id": .string(disk.exportID), "node-name": .string(disk.fleeceNode),
                                                 "name": .string(disk.exportName), "writable": false]
            if let previous = disk.previousBitmap { arguments["bitmaps"] = [.string(previous)] }
            log("block-export-add \(disk.exportID): \(disk.fleeceNode) as '\(disk.exportName)'" + (disk.previousBitmap.map { " with bitmap \($0)" } ?? ""))
            try qmp.execute("block-export-add", arguments)
            push("block-export-del \(disk.exportID)") { [self] in try deleteExport(disk.exportID, timeout: timeout) }
        }
    }

    /// Fails unless every fleecing job still runs: a job that ended (the scratch disk full, an
    /// I/O error) stopped preserving old data, so what was read may not be point-in-time.
    func checkJobsRunning(_ disks: [Disk]) throws {
        let jobs = try qmp.execute("query-block-jobs").arrayValue ?? []
        for disk in disks {
            guard let job = jobs.first(where: { $0["device"]?.stringValue == disk.jobID }),
                  job["status"]?.stringValue == "running" else {
                throw BackupFailure("the fleecing job of \(disk.node) stopped during the backup (scratch space full or an I/O error?): its copy may not be point-in-time")
            }
        }
    }

    /// Undoes everything (or, on success, everything but the checkpoint bitmaps), newest first.
    func finish(success: Bool) {
        while let step = undo.popLast() {
            if success && step.onlyOnFailure { continue }
            log("cleanup: \(step.what)")
            do { try step.run() } catch { cleanupProblems.append("\(step.what): \(error)") }
        }
    }

    private func push(_ what: String, onlyOnFailure: Bool = false, _ run: @escaping () throws -> Void) {
        undo.append(Undo(what: what, onlyOnFailure: onlyOnFailure, run: run))
    }

    /// Puts the bitmaps back as they were before `begin`: the new one is removed, and for an
    /// incremental backup its record since the checkpoint is merged back into the previous
    /// bitmap, which records again.
    static func rollback(_ disks: [Disk]) -> [QMPValue] {
        var actions: [QMPValue] = []
        for disk in disks {
            let node = QMPValue.string(disk.node)
            if let previous = disk.previousBitmap {
                actions.append(["type": "block-dirty-bitmap-enable", "data": ["node": node, "name": .string(previous)]])
                actions.append(["type": "block-dirty-bitmap-merge", "data": [
                    "node": node, "target": .string(previous), "bitmaps": [.string(disk.newBitmap)],
                ]])
            }
            actions.append(["type": "block-dirty-bitmap-remove", "data": ["node": node, "name": .string(disk.newBitmap)]])
        }
        return actions
    }

    private func cancelJob(_ id: String, timeout: Double) throws {
        do {
            try qmp.execute("block-job-cancel", ["device": .string(id), "force": true])
        } catch let error as QMPError where error.errorClass == "DeviceNotActive" {
            return // already gone
        }
        _ = try qmp.waitForEvent(timeout: timeout, "end of job \(id)") { event in
            (event.name == "BLOCK_JOB_CANCELLED" || event.name == "BLOCK_JOB_COMPLETED") && event.data["device"]?.stringValue == id
        }
    }

    /// Cuts the exports off (their NBD connections are dropped), so that a copy in progress
    /// fails at once and the normal failure path cleans up: what an interrupt does.
    func abortExports(_ disks: [Disk]) {
        for disk in disks {
            _ = try? qmp.execute("block-export-del", ["id": .string(disk.exportID), "mode": "hard"])
        }
    }

    private func deleteExport(_ id: String, timeout: Double) throws {
        let listed = try qmp.execute("query-block-exports").arrayValue ?? []
        // Already gone (cut off by an interrupt) and its deletion event already consumed or due.
        guard listed.contains(where: { $0["id"]?.stringValue == id }) else { return }
        try qmp.execute("block-export-del", ["id": .string(id)])
        _ = try qmp.waitForEvent(timeout: timeout, "deletion of export \(id)") { event in
            event.name == "BLOCK_EXPORT_DELETED" && event.data["id"]?.stringValue == id
        }
    }
}
