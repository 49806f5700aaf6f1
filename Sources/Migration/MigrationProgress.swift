import QMP

/// A snapshot of a running migration, handed to `MigrationOrchestrator.onProgress` about
/// once per `MigrationPlan.progressInterval`. Disk figures are the sum over all mirror jobs
/// (`query-block-jobs` offset/len); RAM figures are the source's `query-migrate`.
public struct MigrationProgress: Sendable {
    public var phase: MigrationPhase
    public var elapsedSeconds: Double
    public var diskDoneBytes: Int64 = 0
    public var diskTotalBytes: Int64 = 0
    /// Mirror throughput since the previous snapshot.
    public var diskBytesPerSecond: Double = 0
    public var ram: MigrationRAMSample?
    /// Set while the convergence rule holds.
    public var diagnosis: MigrationConvergenceDiagnosis?
    /// A one-off event worth a line of its own ("switching to post-copy", "recovering").
    public var note: String?

    public init(phase: MigrationPhase, elapsedSeconds: Double) {
        self.phase = phase
        self.elapsedSeconds = elapsedSeconds
    }

    /// One JSON object per snapshot, for `--progress-fd`.
    public var json: QMPValue {
        func optional(_ value: Int64?) -> QMPValue { value.map(QMPValue.int) ?? .null }
        var object: [String: QMPValue] = [
            "phase": .string(phase.description),
            "elapsed-seconds": .double(elapsedSeconds),
            "disk-done-bytes": .int(diskDoneBytes),
            "disk-total-bytes": .int(diskTotalBytes),
            "disk-bytes-per-second": .double(diskBytesPerSecond),
        ]
        if let ram {
            object["migration-status"] = ram.status.map(QMPValue.string) ?? .null
            object["ram-remaining-bytes"] = optional(ram.remainingBytes)
            object["ram-transferred-bytes"] = optional(ram.transferredBytes)
            object["ram-total-bytes"] = optional(ram.totalBytes)
            object["dirty-bytes-per-second"] = ram.dirtyBytesPerSecond.map(QMPValue.double) ?? .null
            object["ram-bytes-per-second"] = ram.bytesPerSecond.map(QMPValue.double) ?? .null
            object["iteration"] = optional(ram.iteration)
            object["throttle-percent"] = optional(ram.throttlePercent)
            object["expected-downtime-ms"] = optional(ram.expectedDowntimeMilliseconds)
            object["postcopy-requests"] = optional(ram.postcopyRequests)
        }
        if let diagnosis { object["not-converging"] = .string(diagnosis.summary) }
        if let note { object["note"] = .string(note) }
        return .object(object)
    }
}
