#if canImport(Glibc)
import Glibc
#endif
import Foundation
import ArgumentParser
import Migration
import QMP

/// Shows `MigrationProgress` snapshots: a one-line display redrawn in place when stderr is a
/// terminal, one plain line per snapshot otherwise (logs, CI), and one JSON object per line
/// on `--progress-fd` for programs. Notes and the non-convergence diagnosis always get lines
/// of their own, so they stay readable after the display moves on.
final class MigrateProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private let toStderr: Bool
    private let terminal: Bool
    private let machineFD: Int32?
    private var lineOpen = false
    private var diagnosisShown = false

    init(stderr: Bool, terminal: Bool, machineFD: Int32?) {
        self.toStderr = stderr
        self.terminal = terminal
        self.machineFD = machineFD
    }

    func show(_ progress: MigrationProgress) {
        lock.withLock {
            if let fd = machineFD { Self.write(fd, progress.json.description + "\n") }
            guard toStderr else { return }
            if let note = progress.note { emitLine("migrate: \(note)") }
            if let diagnosis = progress.diagnosis, !diagnosisShown {
                diagnosisShown = true
                emitLine("migrate: " + diagnosis.text.replacingOccurrences(of: "\n", with: "\nmigrate: "))
            }
            let line = Self.line(progress)
            if terminal {
                Self.write(STDERR_FILENO, "\r\u{1B}[K" + Self.bar(progress) + " " + line)
                lineOpen = true
            } else {
                Self.write(STDERR_FILENO, line + "\n")
            }
        }
    }

    /// Ends an open in-place line before the report or an error is printed.
    func finish() {
        lock.withLock {
            if lineOpen { Self.write(STDERR_FILENO, "\n") }
            lineOpen = false
        }
    }

    private func emitLine(_ text: String) {
        if lineOpen { Self.write(STDERR_FILENO, "\r\u{1B}[K") }
        lineOpen = false
        Self.write(STDERR_FILENO, text + "\n")
    }

    /// `[ 12.0 s] migrating RAM | disk 64/64 MiB | RAM left 120.3 MiB of 512.0 MiB | iteration 5 | dirty 110.2 MiB/s | stream 64.0 MiB/s | throttle 20 % | expected downtime 1800 ms`
    static func line(_ progress: MigrationProgress) -> String {
        func mib(_ bytes: Int64?) -> String { bytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "?" }
        func rate(_ bytes: Double?) -> String { bytes.map { String(format: "%.1f MiB/s", $0 / 1_048_576) } ?? "?" }
        var parts = [String(format: "[%6.1f s] %@", progress.elapsedSeconds, progress.phase.description)]
        if progress.diskTotalBytes > 0 {
            // The figures are QEMU's; a done count above the total must not trap the conversion.
            let percent = progress.diskDoneBytes >= progress.diskTotalBytes ? 100
                : Int(Double(max(0, progress.diskDoneBytes)) * 100 / Double(progress.diskTotalBytes))
            parts.append("disk \(progress.diskDoneBytes >> 20)/\(progress.diskTotalBytes >> 20) MiB (\(percent) %) \(rate(progress.diskBytesPerSecond))")
        }
        if let ram = progress.ram {
            if let status = ram.status, status != "active" { parts.append(status) }
            parts.append("RAM left \(mib(ram.remainingBytes)) of \(mib(ram.totalBytes))")
            parts.append("iteration \(ram.iteration.map(String.init) ?? "?")")
            parts.append("dirty \(rate(ram.dirtyBytesPerSecond))")
            parts.append("stream \(rate(ram.bytesPerSecond))")
            if let throttle = ram.throttlePercent { parts.append("throttle \(throttle) %") }
            if let expected = ram.expectedDowntimeMilliseconds { parts.append("expected downtime \(expected) ms") }
            if let requests = ram.postcopyRequests, requests > 0 { parts.append("post-copy requests \(requests)") }
        }
        if progress.diagnosis != nil { parts.append("NOT CONVERGING") }
        return parts.joined(separator: " | ")
    }

    /// `[#######             ]` for a terminal: the mirrors' bulk copy until READY, then the
    /// share of RAM already sent in this pass (it refills each iteration, which is the point:
    /// a bar that never gets to the end is what non-convergence looks like).
    static func bar(_ progress: MigrationProgress, width: Int = 20) -> String {
        var fraction = 0.0
        if let ram = progress.ram, let total = ram.totalBytes, let remaining = ram.remainingBytes, total > 0 {
            fraction = 1 - Double(min(max(remaining, 0), total)) / Double(total)
        } else if progress.diskTotalBytes > 0 {
            fraction = Double(min(max(progress.diskDoneBytes, 0), progress.diskTotalBytes)) / Double(progress.diskTotalBytes)
        }
        let filled = min(width, max(0, Int(fraction * Double(width))))
        return "[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "]"
    }

    private static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}

extension MigrationConvergePolicy: ExpressibleByArgument {}
