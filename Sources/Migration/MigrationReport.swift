import QMP

/// What a completed migration measured. Times are wall-clock seconds taken by the
/// orchestrator, except the `qemu…` fields, which are QEMU's own `query-migrate` numbers.
public struct MigrationReport: Sendable {
    public struct Disk: Sendable {
        public var sourceNode: String
        public var exportName: String
        public var endpoint: String
        /// Bytes the mirror reported as its work at READY (the bulk copy).
        public var bulkBytes: Int64
        /// blockdev-mirror → BLOCK_JOB_READY.
        public var bulkSeconds: Double
        /// The mirror's final progress counter (bulk copy plus re-copied dirty blocks).
        public var totalBytes: Int64
        public var bulkBytesPerSecond: Double { bulkSeconds > 0 ? Double(bulkBytes) / bulkSeconds : 0 }
    }

    public var exportServer: String
    public var disks: [Disk] = []
    /// Whole run, preflight to resume.
    public var totalSeconds: Double = 0
    /// First blockdev-mirror → every mirror READY.
    public var mirrorSeconds: Double = 0
    /// `migrate` → `completed` on both sides (includes the final sync at pre-switchover).
    public var ramMigrationSeconds: Double = 0
    /// pre-switchover → every mirror COMPLETED (final sync and flush).
    public var finalSyncSeconds: Double = 0
    /// Stopping the exports (flush, close, unlock).
    public var exportStopSeconds: Double = 0
    public var qemuTotalTimeMilliseconds: Int64?
    public var qemuDowntimeMilliseconds: Int64?
    public var qemuSetupTimeMilliseconds: Int64?
    public var ramTransferredBytes: Int64?
    public var ramTotalBytes: Int64?
    public var ramDirtySyncCount: Int64?
    public var postcopy = false
    public var destinationResumed = false

    public var diskBulkBytes: Int64 { disks.reduce(0) { $0 + $1.bulkBytes } }
    public var diskTotalBytes: Int64 { disks.reduce(0) { $0 + $1.totalBytes } }
    public var mirrorBytesPerSecond: Double { mirrorSeconds > 0 ? Double(diskBulkBytes) / mirrorSeconds : 0 }

    public var text: String {
        func mib(_ bytes: Int64?) -> String { bytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "?" }
        func ms(_ value: Int64?) -> String { value.map { "\($0) ms" } ?? "?" }
        var lines = [
            "migration completed via \(exportServer)\(postcopy ? " (post-copy)" : "")",
            String(format: "  total time        %.3f s", totalSeconds),
            String(format: "  disk mirror       %.3f s, %@ at %.1f MiB/s (bulk copy to READY)", mirrorSeconds,
                   mib(diskBulkBytes), mirrorBytesPerSecond / 1_048_576),
            "  disk transferred  \(mib(diskTotalBytes)) (bulk plus re-copied dirty blocks)",
            String(format: "  final disk sync   %.3f s", finalSyncSeconds),
            String(format: "  RAM migration     %.3f s (QEMU total-time %@, setup %@)", ramMigrationSeconds,
                   ms(qemuTotalTimeMilliseconds), ms(qemuSetupTimeMilliseconds)),
            "  RAM transferred   \(mib(ramTransferredBytes)) of \(mib(ramTotalBytes)), \(ramDirtySyncCount.map(String.init) ?? "?") dirty-sync iterations",
            "  downtime          \(ms(qemuDowntimeMilliseconds))",
            String(format: "  exports stopped   %.3f s", exportStopSeconds),
            "  destination       \(destinationResumed ? "running" : "left paused")",
        ]
        for disk in disks {
            lines.append(String(format: "  disk %@ → %@ (%@): %@ in %.3f s, %.1f MiB/s", disk.sourceNode, disk.endpoint, disk.exportName,
                                mib(disk.bulkBytes), disk.bulkSeconds, disk.bulkBytesPerSecond / 1_048_576))
        }
        return lines.joined(separator: "\n")
    }

    public var json: QMPValue {
        func optional(_ value: Int64?) -> QMPValue { value.map(QMPValue.int) ?? .null }
        return [
            "status": "completed",
            "export-server": .string(exportServer),
            "postcopy": .bool(postcopy),
            "destination-resumed": .bool(destinationResumed),
            "total-seconds": .double(totalSeconds),
            "mirror-seconds": .double(mirrorSeconds),
            "mirror-bytes": .int(diskBulkBytes),
            "mirror-bytes-per-second": .double(mirrorBytesPerSecond),
            "disk-transferred-bytes": .int(diskTotalBytes),
            "final-sync-seconds": .double(finalSyncSeconds),
            "ram-migration-seconds": .double(ramMigrationSeconds),
            "ram-transferred-bytes": optional(ramTransferredBytes),
            "ram-total-bytes": optional(ramTotalBytes),
            "ram-dirty-sync-count": optional(ramDirtySyncCount),
            "qemu-total-time-ms": optional(qemuTotalTimeMilliseconds),
            "qemu-setup-time-ms": optional(qemuSetupTimeMilliseconds),
            "downtime-ms": optional(qemuDowntimeMilliseconds),
            "export-stop-seconds": .double(exportStopSeconds),
            "disks": .array(disks.map { disk in [
                "source-node": .string(disk.sourceNode), "export": .string(disk.exportName), "endpoint": .string(disk.endpoint),
                "bulk-bytes": .int(disk.bulkBytes), "bulk-seconds": .double(disk.bulkSeconds),
                "bulk-bytes-per-second": .double(disk.bulkBytesPerSecond), "total-bytes": .int(disk.totalBytes),
            ] }),
        ]
    }
}
