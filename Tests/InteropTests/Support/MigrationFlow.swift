import Foundation
import QMP

/// Drives two QEMUs through the safe B1 sequence of docs/migration.md §3.1, step by step,
/// with a time limit on every wait. The test keeps this independent of the `Migration`
/// module so that `swiftnbd migrate` is checked against a second, explicit rendering of the
/// same sequence.
struct MigrationFlow {
    let source: MigrationVM
    let destination: MigrationVM
    let nbdPort: Int
    let migrationPort: Int
    var timeout: Double = 60

    struct Timings: CustomStringConvertible {
        var mirror: Double = 0
        var migration: Double = 0
        var downtimeMilliseconds: Int64?
        var mirrorLength: Int64 = 0
        var description: String {
            String(format: "mirror %.3f s (%.0f MiB/s), migrate→completed %.3f s, downtime %@ ms",
                   mirror, Double(mirrorLength) / 1_048_576 / max(mirror, 1e-6), migration,
                   downtimeMilliseconds.map(String.init) ?? "?")
        }
    }

    /// Destination: capabilities, TLS for the incoming stream, listen.
    func prepareDestination() throws {
        try destination.qmp.execute("migrate-set-capabilities", ["capabilities": [
            ["capability": "events", "state": true], ["capability": "late-block-activate", "state": true]]])
        try destination.qmp.execute("migrate-set-parameters", ["tls-creds": "tls0"])
        try destination.qmp.execute("migrate-incoming", ["uri": .string("tcp:127.0.0.1:\(migrationPort)")])
    }

    /// Source: the NBD client node with TLS and the raw node on top.
    func addMirrorTarget() throws {
        try Self.addMirrorTarget(on: source, port: nbdPort)
    }

    static func addMirrorTarget(on source: MigrationVM, port nbdPort: Int) throws {
        try source.qmp.execute("blockdev-add", [
            "driver": "nbd", "node-name": "migration-vda-storage",
            "server": ["type": "inet", "host": "127.0.0.1", "port": .string(String(nbdPort))],
            "export": "vda", "tls-creds": "tls0",
        ])
        try source.qmp.execute("blockdev-add", ["driver": "raw", "node-name": "migration-vda-format", "file": "migration-vda-storage"])
    }

    /// Runs the whole sequence up to `completed` on both sides. The caller stops the export
    /// server, verifies, and sends `cont`.
    func migrate() throws -> Timings {
        var timings = Timings()
        try prepareDestination()
        try addMirrorTarget()
        let mirrorStart = Date()
        try source.qmp.execute("blockdev-mirror", [
            "job-id": "drive-vda", "device": "vda-format", "target": "migration-vda-format",
            "sync": "full", "copy-mode": "background", "auto-finalize": true, "auto-dismiss": false,
        ])
        let ready = try source.qmp.waitForEvent(timeout: timeout, "BLOCK_JOB_READY for drive-vda") {
            ($0.name == "BLOCK_JOB_READY" || $0.name == "BLOCK_JOB_COMPLETED") && $0.data["device"] == "drive-vda"
        }
        guard ready.name == "BLOCK_JOB_READY" else { throw MigrationTestFailure("mirror ended before READY: \(ready)") }
        timings.mirror = Date().timeIntervalSince(mirrorStart)
        timings.mirrorLength = ready.data["len"]?.intValue ?? 0

        let migrationStart = Date()
        try source.qmp.execute("migrate-set-capabilities", ["capabilities": [
            ["capability": "events", "state": true], ["capability": "pause-before-switchover", "state": true]]])
        try source.qmp.execute("migrate-set-parameters", ["tls-creds": "tls0"])
        try source.qmp.execute("migrate", ["uri": .string("tcp:127.0.0.1:\(migrationPort)")])
        try waitForMigration(source, status: "pre-switchover")

        try source.qmp.execute("block-job-cancel", ["device": "drive-vda"])
        let completed = try source.qmp.waitForEvent(named: "BLOCK_JOB_COMPLETED", timeout: timeout) { $0.data["device"] == "drive-vda" }
        if let error = completed.data["error"] { throw MigrationTestFailure("final mirror sync failed: \(error)") }
        try source.qmp.execute("job-dismiss", ["id": "drive-vda"])
        try source.qmp.execute("blockdev-del", ["node-name": "migration-vda-format"])
        try source.qmp.execute("blockdev-del", ["node-name": "migration-vda-storage"])
        try source.qmp.execute("migrate-continue", ["state": "pre-switchover"])
        try waitForMigration(source, status: "completed")
        try waitForMigration(destination, status: "completed")
        timings.migration = Date().timeIntervalSince(migrationStart)
        timings.downtimeMilliseconds = try source.qmp.execute("query-migrate")["downtime"]?.intValue
        return timings
    }

    /// Waits for a MIGRATION event with `status`, failing early on failed/cancelled.
    func waitForMigration(_ vm: MigrationVM, status: String) throws {
        let event = try vm.qmp.waitForEvent(timeout: timeout, "\(vm.name) MIGRATION \(status)") {
            guard $0.name == "MIGRATION", let s = $0.data["status"]?.stringValue else { return false }
            return s == status || s == "failed" || s == "cancelled"
        }
        guard event.data["status"]?.stringValue == status else {
            let info = (try? vm.qmp.execute("query-migrate", timeout: 5)).map(\.description) ?? "?"
            throw MigrationTestFailure("\(vm.name): migration \(event.data["status"] ?? "?") instead of \(status): \(info)")
        }
    }
}
