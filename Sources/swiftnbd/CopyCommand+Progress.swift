#if canImport(Glibc)
import Glibc
#endif
import NBDClient

/// Bytes done so far, and an optional progress bar on stderr redrawn by its own thread.
final class CopyProgress: @unchecked Sendable {
    let total: UInt64
    private let lock = ConditionLock()
    private var done: UInt64 = 0
    private var finished = false
    private let start = CopyProgress.now()

    init(total: UInt64) { self.total = total }

    func add(_ bytes: UInt64) { lock.withLock { done += bytes } }

    var completed: UInt64 { lock.withLock { done } }

    /// Where progress goes: a bar on stderr, and/or "N/100" lines on a descriptor (as
    /// nbdcopy's --progress=FD, for programs that watch a copy).
    private var barOnStderr = false
    private var machineFD: Int32?
    /// Only under `output`.
    private var lastPercent = -1

    /// Serializes the reports (and `lastPercent`): the reporter thread and `stop()` both report,
    /// and a periodic report must never land after the final one (a stale "97/100" after
    /// "100/100"). Taken before `lock`, never inside it.
    private let output = ConditionLock()

    /// Starts reporting every 200 ms until `stop()`.
    func start(bar: Bool, machineFD: Int32?) {
        guard bar || machineFD != nil else { return }
        barOnStderr = bar
        self.machineFD = machineFD
        try? spawnThread { [self] in
            while output.withLock({ () -> Bool in
                guard !lock.withLock({ finished }) else { return false }
                report(final: false)
                return true
            }) {
                usleep(200_000)
            }
        }
    }

    /// Ends the reports; with `drawFinal`, the final one is the last thing written.
    func stop(drawFinal: Bool) {
        output.withLock {
            let wasRunning = lock.withLock { () -> Bool in
                defer { finished = true }
                return !finished
            }
            if drawFinal && wasRunning { report(final: true) }
        }
    }

    /// Called with `output` held.
    private func report(final: Bool) {
        if barOnStderr { draw(final: final) }
        if let fd = machineFD {
            let percent = total == 0 ? 100 : Int(completed * 100 / total)
            guard percent != lastPercent else { return }
            lastPercent = percent
            let line = "\(percent)/100\n"
            _ = line.withCString { write(fd, $0, strlen($0)) }
        }
    }

    private func draw(final: Bool) {
        let bytes = completed
        let fraction = total == 0 ? 1 : Double(bytes) / Double(total)
        let width = 30
        let filled = min(width, Int(fraction * Double(width)))
        let elapsed = max(CopyProgress.now() - start, 0.001)
        let rate = Double(bytes) / elapsed / 1_048_576
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        let percent = Int((fraction * 100).rounded(.down))
        let line = "\r[\(bar)] \(percent)% \(bytes >> 20)/\(total >> 20) MiB \(Int(rate)) MiB/s" + (final ? "\n" : "")
        _ = line.withCString { fputs($0, stderr) }
        fflush(stderr)
    }

    var elapsedSeconds: Double { CopyProgress.now() - start }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
