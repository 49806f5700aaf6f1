import Foundation
import Logging
import QMP

/// Post-copy after `migrate-continue`: the destination gets the device state and runs the
/// guest while the rest of RAM follows (pages it touches first are requested from the
/// source). From here on neither side has the whole VM, so a broken stream must not lose
/// it: QEMU pauses both sides (`postcopy-paused`) and we reconnect them with
/// `migrate-recover` on the destination and `migrate` with `resume` on the source.
extension MigrationOrchestrator {
    func finishPostcopy() throws {
        phase = .postcopy
        let start = Date()
        var deadline = Date().addingTimeInterval(plan.phaseTimeout)
        var lastStatus = ("?", "?")
        while true {
            if cancelFlag.isSet {
                throw MigrationError(.interrupted, "interrupted during post-copy", phase: phase)
            }
            for (side, client) in [("source", source), ("destination", destination)] where !client.isConnected {
                throw MigrationError(.migrationFailed, "lost the \(side) QMP connection (QEMU exited?) during post-copy", phase: phase)
            }
            if Date() > deadline {
                throw MigrationError(.timedOut, "post-copy did not complete within \(plan.phaseTimeout) s (source \(lastStatus.0), destination \(lastStatus.1))", phase: phase)
            }
            let sourceStatus = try source.execute("query-migrate", timeout: 10)["status"]?.stringValue ?? "?"
            let destinationStatus = try destination.execute("query-migrate", timeout: 10)["status"]?.stringValue ?? "?"
            lastStatus = (sourceStatus, destinationStatus)
            for (side, status) in [("source", sourceStatus), ("destination", destinationStatus)] where ["failed", "cancelled"].contains(status) {
                throw MigrationError(.migrationFailed, "\(side) migration \(status) during post-copy: \(migrationFailureDetail())", phase: phase)
            }
            // The guest can run on the destination once it has the device state; its disks
            // are final (the mirrors finished at pre-switchover), but the exports must let go
            // of the images before the destination activates them.
            if plan.resumeDestination, !report.destinationResumed,
               ["postcopy-active", "completed"].contains(destinationStatus) {
                try stopExports()
                try resumeDestination()
                phase = .postcopy
                try sample(note: "destination running; the rest of RAM follows on demand")
            }
            if sourceStatus == "completed" && destinationStatus == "completed" { break }
            if sourceStatus == "postcopy-paused" {
                try recoverPostcopy(destinationStatus: destinationStatus)
                deadline = Date().addingTimeInterval(plan.phaseTimeout)
                continue
            }
            try sample()
            usleep(200_000)
        }
        report.postcopySeconds = Date().timeIntervalSince(start)
        report.postcopyRecoveries = postcopyRecoveryAttemptsUsed
    }

    /// One recovery attempt; waits (bounded) until the destination has noticed the break too.
    private func recoverPostcopy(destinationStatus: String) throws {
        if destinationStatus == "postcopy-active" {
            // The destination has not seen the break yet; it will when its read fails.
            usleep(200_000)
            return
        }
        guard postcopyRecoveryAttemptsUsed < plan.postcopyRecoveryAttempts else {
            throw MigrationError(.postcopyPaused, "the post-copy stream broke and \(plan.postcopyRecoveryAttempts) recovery attempts failed", phase: phase)
        }
        postcopyRecoveryAttemptsUsed += 1
        let attempt = postcopyRecoveryAttemptsUsed
        logger.warning("post-copy stream broke; recovery attempt \(attempt) of \(plan.postcopyRecoveryAttempts)")
        try sample(note: "post-copy stream broke: VM paused on both sides; recovery attempt \(attempt)")
        if attempt > 1 { usleep(1_000_000) }
        // A destination still listening from a previous attempt keeps listening.
        if destinationStatus == "postcopy-paused" {
            do {
                try destination.execute("migrate-recover", ["uri": .string(listenURI)], timeout: 10)
            } catch let error as QMPError where error.code == .commandFailed {
                logger.warning("migrate-recover on the destination failed: \(error)")
                return
            }
        }
        do {
            try source.execute("migrate", ["uri": .string(migrationURI), "resume": true], timeout: 10)
        } catch let error as QMPError where error.code == .commandFailed {
            logger.warning("migrate resume on the source failed: \(error)")
            return
        }
        // Bounded wait for the source to leave postcopy-paused (connect and handshake).
        let deadline = Date().addingTimeInterval(min(plan.phaseTimeout, 30))
        while Date() < deadline {
            let status = try source.execute("query-migrate", timeout: 10)["status"]?.stringValue ?? "?"
            if status != "postcopy-paused" && status != "postcopy-recover" { break }
            if cancelFlag.isSet { return }
            usleep(100_000)
        }
        try sample(note: "post-copy recovery attempt \(attempt) reconnected")
    }

    /// The exact steps to finish a paused post-copy by hand.
    func manualPostcopyRecovery() -> String {
        var text = """
            the VM is paused in post-copy and neither QEMU has all of its RAM: do not quit or `cont` either of them.
            To finish once the network works again, send on the destination's QMP monitor
              {"execute": "migrate-recover", "arguments": {"uri": "\(listenURI)"}}
            then on the source's
              {"execute": "migrate", "arguments": {"uri": "\(migrationURI)", "resume": true}}
            and wait until query-migrate says "completed" on both
            """
        if !report.destinationResumed { text += "; then stop the NBD exports (already done if swiftnbd exited) and `cont` the destination" }
        return text
    }
}
