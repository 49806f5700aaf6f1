import Foundation
import Logging
import QMP

/// Sampling while the orchestrator waits: progress snapshots for the caller, the figures
/// the report keeps peaks of, and the convergence check with its policy.
extension MigrationOrchestrator {
    /// Takes a snapshot if `plan.progressInterval` has passed (or `force`), hands it to
    /// `onProgress`, and returns the RAM part (nil before `migrate` or between snapshots).
    @discardableResult
    func sample(force: Bool = false, note: String? = nil) throws -> MigrationRAMSample? {
        let now = Date()
        guard force || note != nil || now.timeIntervalSince(lastSampleTime) >= plan.progressInterval else { return nil }
        lastSampleTime = now
        var progress = MigrationProgress(phase: phase, elapsedSeconds: now.timeIntervalSince(runStarted))
        progress.note = note
        if !liveJobs.isEmpty {
            let jobs = try source.execute("query-block-jobs", timeout: 10).arrayValue ?? []
            for job in jobs where liveJobs.contains(job["device"]?.stringValue ?? "") {
                progress.diskDoneBytes = saturatingAdd(progress.diskDoneBytes, max(0, job["offset"]?.intValue ?? 0))
                progress.diskTotalBytes = saturatingAdd(progress.diskTotalBytes, max(0, job["len"]?.intValue ?? 0))
            }
            if let last = lastDiskSampleTime, progress.diskDoneBytes >= lastDiskDone {
                let seconds = now.timeIntervalSince(last)
                if seconds > 0 { progress.diskBytesPerSecond = Double(progress.diskDoneBytes - lastDiskDone) / seconds }
            }
            lastDiskDone = progress.diskDoneBytes
            lastDiskSampleTime = now
        }
        var ram: MigrationRAMSample?
        if migrateStarted {
            let sample = MigrationRAMSample(queryMigrate: try source.execute("query-migrate", timeout: 10))
            report.absorb(sample)
            lastRAMSample = sample
            currentDiagnosis = postcopyStarted ? nil : convergence.observe(sample)
            if let diagnosis = currentDiagnosis {
                lastDiagnosis = diagnosis
                progress.diagnosis = diagnosis
            }
            progress.ram = sample
            ram = sample
        }
        onProgress?(progress)
        return ram
    }

    /// Runs between event waits during pre-copy: samples, starts post-copy after the asked
    /// number of iterations, and applies the converge policy to a diagnosis.
    func watchPrecopy() throws {
        // The switch to post-copy is checked on every slice, not once per snapshot: a small
        // guest can finish its iterations and park at pre-switchover within a second.
        if !postcopyStarted, let after = plan.tunables.postcopyAfterIterations {
            let quick = MigrationRAMSample(queryMigrate: try source.execute("query-migrate", timeout: 10))
            report.absorb(quick)
            if quick.status == "active", (quick.iteration ?? 0) >= Int64(after) {
                try startPostcopy(reason: "after \(after) iterations")
                return
            }
        }
        guard let sample = try sample(), !postcopyStarted, sample.status == "active" else { return }
        guard let diagnosis = currentDiagnosis else { return }
        if report.convergence == nil {
            logger.info("\(diagnosis.summary)")
            report.convergence = "diagnosed at iteration \(diagnosis.iteration): \(diagnosis.summary)"
        }
        // With auto-converge QEMU is still acting on it (raising the throttle each pass); the
        // policy steps in only once the throttle is at QEMU's default ceiling.
        if plan.tunables.autoConverge && (sample.throttlePercent ?? 0) < 99 { return }
        switch plan.tunables.convergePolicy {
        case .wait:
            return
        case .abort:
            var error = MigrationError(.notConverging, diagnosis.text, phase: phase)
            error.diagnosis = diagnosis
            throw error
        case .postcopy:
            report.convergence = "switched to post-copy at iteration \(diagnosis.iteration): \(diagnosis.summary)"
            try startPostcopy(reason: "because RAM is not converging")
        }
    }

    func startPostcopy(reason: String) throws {
        logger.info("starting post-copy \(reason)")
        try source.execute("migrate-start-postcopy")
        postcopyStarted = true
        try sample(note: "switching to post-copy \(reason)")
    }

    /// What to tell the user when pre-copy ran out of time: the diagnosis if the rule held,
    /// else the last figures, and the remedies either way.
    func stalledPrecopyExplanation() -> String {
        if let diagnosis = lastDiagnosis ?? convergence.diagnosis() { return diagnosis.text }
        guard let last = lastRAMSample else { return "no RAM figures were sampled" }
        func mib(_ bytes: Double?) -> String { bytes.map { String(format: "%.1f MiB", $0 / 1_048_576) } ?? "?" }
        return "last figures: \(mib(last.remainingBytes.map(Double.init))) of RAM still to send at iteration \(last.iteration.map(String.init) ?? "?"), "
            + "dirty rate \(mib(last.dirtyBytesPerSecond))/s, stream \(mib(last.bytesPerSecond))/s"
            + (last.expectedDowntimeMilliseconds.map { ", expected downtime \($0) ms" } ?? "")
    }
}

/// Adds without trapping; clamps at Int64.max (the operands come from QMP replies).
func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? (b > 0 ? .max : .min) : sum
}
