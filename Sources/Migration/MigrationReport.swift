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
        /// Blocks the guest dirtied after the mirror copied them, copied again.
        public var recopiedBytes: Int64 { max(0, totalBytes &- bulkBytes) }
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
    /// Highest `cpu-throttle-percentage` seen (auto-converge); nil when QEMU never reported one.
    public var peakThrottlePercent: Int64?
    /// Dirty rate (bytes/s) at the last sample before the switchover, and the highest seen.
    public var dirtyBytesPerSecond: Double?
    public var peakDirtyBytesPerSecond: Double?
    /// Pages sent in full, pages sent as zero markers (QEMU's `duplicate`), pages skipped.
    public var normalPages: Int64?
    public var zeroPages: Int64?
    public var skippedPages: Int64?
    public var xbzrlePages: Int64?
    public var xbzrleBytes: Int64?
    public var xbzrleCacheMisses: Int64?
    public var multifdBytes: Int64?
    /// Pages the destination asked for because its running guest touched them (post-copy).
    public var postcopyRequests: Int64?
    /// `migrate-continue` into post-copy → completed.
    public var postcopySeconds: Double?
    /// Post-copy streams that broke and were recovered.
    public var postcopyRecoveries = 0
    /// What the convergence check found and did, if it ever fired.
    public var convergence: String?

    public var diskBulkBytes: Int64 { disks.reduce(0) { $0 + $1.bulkBytes } }
    public var diskTotalBytes: Int64 { disks.reduce(0) { $0 + $1.totalBytes } }
    public var mirrorBytesPerSecond: Double { mirrorSeconds > 0 ? Double(diskBulkBytes) / mirrorSeconds : 0 }

    public var text: String {
        func mib(_ bytes: Int64?) -> String { bytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "?" }
        func ms(_ value: Int64?) -> String { value.map { "\($0) ms" } ?? "?" }
        func rate(_ value: Double?) -> String { value.map { String(format: "%.1f MiB/s", $0 / 1_048_576) } ?? "?" }
        func count(_ value: Int64?) -> String { value.map(String.init) ?? "?" }
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
            // QEMU measures the dirty rate once per second of pre-copy; a shorter migration has none.
            dirtyBytesPerSecond == nil && peakDirtyBytesPerSecond == nil
                ? "  dirty rate        not measured (pre-copy ended within QEMU's first one-second period)"
                : "  dirty rate        \(rate(dirtyBytesPerSecond)) at the end, peak \(rate(peakDirtyBytesPerSecond))",
            "  vCPU throttle     \(peakThrottlePercent.map { "peak \($0) %" } ?? "none")",
            "  RAM pages         \(count(normalPages)) sent, \(count(zeroPages)) zero"
                + (skippedPages.map { ", \($0) skipped" } ?? "")
                + (xbzrlePages.map { ", \($0) xbzrle (\(mib(xbzrleBytes)), \(count(xbzrleCacheMisses)) cache misses)" } ?? "")
                + (multifdBytes.map { $0 > 0 ? ", \(mib($0)) over multifd" : "" } ?? ""),
            String(format: "  exports stopped   %.3f s", exportStopSeconds),
        ]
        if postcopy {
            lines.append("  post-copy         \(postcopySeconds.map { String(format: "%.3f s", $0) } ?? "?"), \(count(postcopyRequests)) page requests, \(postcopyRecoveries) recoveries")
        }
        if let convergence { lines.append("  convergence       \(convergence)") }
        lines += [
            "  destination       \(destinationResumed ? "running" : "left paused")",
        ]
        for disk in disks {
            lines.append(String(format: "  disk %@ → %@ (%@): %@ in %.3f s, %.1f MiB/s, %@ re-copied", disk.sourceNode, disk.endpoint, disk.exportName,
                                mib(disk.bulkBytes), disk.bulkSeconds, disk.bulkBytesPerSecond / 1_048_576, mib(disk.recopiedBytes)))
        }
        return lines.joined(separator: "\n")
    }

    public var json: QMPValue {
        func optional(_ value: Int64?) -> QMPValue { value.map(QMPValue.int) ?? .null }
        func real(_ value: Double?) -> QMPValue { value.map(QMPValue.double) ?? .null }
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
            "peak-throttle-percent": optional(peakThrottlePercent),
            "dirty-bytes-per-second": real(dirtyBytesPerSecond),
            "peak-dirty-bytes-per-second": real(peakDirtyBytesPerSecond),
            "ram-iterations": optional(ramDirtySyncCount),
            "normal-pages": optional(normalPages),
            "zero-pages": optional(zeroPages),
            "skipped-pages": optional(skippedPages),
            "xbzrle-pages": optional(xbzrlePages),
            "xbzrle-bytes": optional(xbzrleBytes),
            "xbzrle-cache-misses": optional(xbzrleCacheMisses),
            "multifd-bytes": optional(multifdBytes),
            "postcopy-requests": optional(postcopyRequests),
            "postcopy-seconds": real(postcopySeconds),
            "postcopy-recoveries": .int(Int64(postcopyRecoveries)),
            "convergence": convergence.map(QMPValue.string) ?? .null,
            "disks": .array(disks.map { disk in [
                "source-node": .string(disk.sourceNode), "export": .string(disk.exportName), "endpoint": .string(disk.endpoint),
                "bulk-bytes": .int(disk.bulkBytes), "bulk-seconds": .double(disk.bulkSeconds),
                "bulk-bytes-per-second": .double(disk.bulkBytesPerSecond), "total-bytes": .int(disk.totalBytes),
                "recopied-bytes": .int(disk.recopiedBytes),
            ] }),
        ]
    }
}

extension MigrationReport {
    /// Keeps the peaks of a sample taken while the migration runs (throttle and dirty rate
    /// are only reported while it is active, so the final `query-migrate` cannot give them).
    mutating func absorb(_ sample: MigrationRAMSample) {
        if let throttle = sample.throttlePercent {
            peakThrottlePercent = max(peakThrottlePercent ?? 0, throttle)
        }
        if let dirty = sample.dirtyBytesPerSecond, sample.status == "active" {
            dirtyBytesPerSecond = dirty
            peakDirtyBytesPerSecond = max(peakDirtyBytesPerSecond ?? 0, dirty)
        }
        if let requests = sample.postcopyRequests { postcopyRequests = max(postcopyRequests ?? 0, requests) }
    }

    /// Takes QEMU's totals from the source's `query-migrate` after completion.
    mutating func finish(with sample: MigrationRAMSample) {
        absorb(sample)
        qemuTotalTimeMilliseconds = sample.totalTimeMilliseconds
        qemuDowntimeMilliseconds = sample.downtimeMilliseconds
        qemuSetupTimeMilliseconds = sample.setupTimeMilliseconds
        ramTransferredBytes = sample.transferredBytes
        ramTotalBytes = sample.totalBytes
        ramDirtySyncCount = sample.iteration
        normalPages = sample.normalPages
        zeroPages = sample.duplicatePages
        skippedPages = sample.skippedPages
        xbzrlePages = sample.xbzrlePages
        xbzrleBytes = sample.xbzrleBytes
        xbzrleCacheMisses = sample.xbzrleCacheMisses
        multifdBytes = sample.multifdBytes
    }
}
