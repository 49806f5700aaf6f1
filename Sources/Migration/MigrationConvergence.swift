import Foundation
import QMP

/// What `swiftnbd migrate` does when pre-copy is found not to converge.
public enum MigrationConvergePolicy: String, Sendable, CaseIterable {
    /// Keep trying until the phase time limit, then abort with the diagnosis.
    case wait
    /// Abort cleanly as soon as the diagnosis is made.
    case abort
    /// Switch to post-copy when the diagnosis is made (the `postcopy-ram` capability is
    /// enabled up front, since QEMU refuses capability changes during a migration).
    case postcopy
}

/// The measured reason why RAM is not converging, and what would help.
public struct MigrationConvergenceDiagnosis: Sendable, Equatable {
    /// Average dirty rate over the window, bytes/s.
    public var dirtyBytesPerSecond: Double
    /// Average throughput over the window, bytes/s.
    public var bandwidthBytesPerSecond: Double
    /// Remaining RAM at the first and last iteration of the window.
    public var remainingBefore: Int64
    public var remainingNow: Int64
    public var iteration: Int64
    public var windowIterations: Int
    public var expectedDowntimeMilliseconds: Int64?
    public var throttlePercent: Int64?
    /// Remedies that apply to this run, as command-line advice.
    public var remedies: [String]

    public var summary: String {
        func mib(_ bytes: Double) -> String { String(format: "%.1f MiB", bytes / 1_048_576) }
        var text = "RAM is not converging: the guest dirties \(mib(dirtyBytesPerSecond))/s while the migration stream carries \(mib(bandwidthBytesPerSecond))/s; "
            + "\(mib(Double(remainingNow))) still to send after \(iteration) iterations (\(mib(Double(remainingBefore))) \(windowIterations) iterations ago)"
        if let expected = expectedDowntimeMilliseconds { text += "; QEMU expects \(expected) ms of downtime" }
        if let throttle = throttlePercent, throttle > 0 { text += "; vCPUs throttled \(throttle) %" }
        return text
    }

    public var json: QMPValue {
        var object: [String: QMPValue] = [
            "dirty-bytes-per-second": .double(dirtyBytesPerSecond),
            "stream-bytes-per-second": .double(bandwidthBytesPerSecond),
            "remaining-bytes": .int(remainingNow),
            "remaining-bytes-window-start": .int(remainingBefore),
            "iteration": .int(iteration),
            "window-iterations": .int(Int64(windowIterations)),
            "remedies": .array(remedies.map(QMPValue.string)),
            "summary": .string(summary),
        ]
        object["expected-downtime-ms"] = expectedDowntimeMilliseconds.map(QMPValue.int) ?? .null
        object["throttle-percent"] = throttlePercent.map(QMPValue.int) ?? .null
        return .object(object)
    }

    /// The summary and one remedy per line.
    public var text: String {
        ([summary, "what would help:"] + remedies.map { "  " + $0 }).joined(separator: "\n")
    }
}

/// Decides from successive `query-migrate` samples whether pre-copy is converging. The rule,
/// over the last `window` iterations (the first pass, which sends all of RAM, never counts):
/// the guest dirtied memory at least about as fast as the stream carried it, and the RAM still
/// to send did not shrink by a tenth. Either alone is normal for a while; together, for
/// several passes, they mean the next pass will look like this one.
public struct MigrationConvergenceMonitor: Sendable {
    public struct Iteration: Sendable, Equatable {
        var number: Int64
        var remaining: Int64
        var dirtyBytesPerSecond: Double
        var bandwidthBytesPerSecond: Double
    }

    public let window: Int
    public let tunables: MigrationTunables
    public private(set) var iterations: [Iteration] = []
    public private(set) var latest: MigrationRAMSample?
    /// Throughput samples since the last iteration boundary (QEMU's `mbps` is short-term).
    private var bandwidthSamples: [Double] = []

    public init(window: Int = 3, tunables: MigrationTunables = MigrationTunables()) {
        self.window = max(1, window)
        self.tunables = tunables
    }

    /// Feeds one sample; returns a diagnosis when the rule holds.
    public mutating func observe(_ sample: MigrationRAMSample) -> MigrationConvergenceDiagnosis? {
        guard sample.status == "active" else { return nil }
        latest = sample
        if let rate = sample.bytesPerSecond, rate > 0 { bandwidthSamples.append(rate) }
        guard let number = sample.iteration, let remaining = sample.remainingBytes, let dirty = sample.dirtyBytesPerSecond else {
            return nil
        }
        if number >= 2, number > (iterations.last?.number ?? 0) {
            let bandwidth = bandwidthSamples.isEmpty ? 0 : bandwidthSamples.reduce(0, +) / Double(bandwidthSamples.count)
            iterations.append(Iteration(number: number, remaining: remaining, dirtyBytesPerSecond: dirty, bandwidthBytesPerSecond: bandwidth))
            bandwidthSamples.removeAll()
            if iterations.count > 32 { iterations.removeFirst(iterations.count - 32) }
        }
        return diagnosis()
    }

    /// The diagnosis for the iterations seen so far, if they show no convergence.
    public func diagnosis() -> MigrationConvergenceDiagnosis? {
        guard iterations.count >= window + 1 else { return nil }
        let recent = Array(iterations.suffix(window + 1))
        guard let first = recent.first, let last = recent.last else { return nil }
        let measured = recent.dropFirst()
        let dirty = measured.map(\.dirtyBytesPerSecond).reduce(0, +) / Double(measured.count)
        let bandwidth = measured.map(\.bandwidthBytesPerSecond).reduce(0, +) / Double(measured.count)
        guard bandwidth > 0, dirty >= 0.9 * bandwidth else { return nil }
        guard Double(last.remaining) >= 0.9 * Double(first.remaining) else { return nil }
        return MigrationConvergenceDiagnosis(
            dirtyBytesPerSecond: dirty, bandwidthBytesPerSecond: bandwidth, remainingBefore: first.remaining,
            remainingNow: last.remaining, iteration: last.number, windowIterations: window,
            expectedDowntimeMilliseconds: latest?.expectedDowntimeMilliseconds, throttlePercent: latest?.throttlePercent,
            remedies: remedies(dirty: dirty, bandwidth: bandwidth, remaining: last.remaining))
    }

    private func remedies(dirty: Double, bandwidth: Double, remaining: Int64) -> [String] {
        var list: [String] = []
        let throttle = latest?.throttlePercent ?? 0
        if !tunables.autoConverge {
            list.append("--auto-converge: throttle the guest's vCPUs until it dirties less than the stream carries (the guest runs slower until the switchover)")
        } else if throttle > 0 {
            list.append("--auto-converge is on and has throttled the vCPUs to \(throttle) %; it raises the throttle each pass, so waiting longer may still converge")
        }
        if tunables.postcopyAfterIterations == nil {
            list.append("--postcopy-after N or --converge postcopy: switch to post-copy, which finishes in one more pass; a network failure during post-copy pauses the VM until it is recovered")
        }
        // Pre-copy converges once the link outruns the dirty rate with some margin.
        let neededMiB = saturatingInt64(dirty * 1.25 / 1_048_576)
        let currentMiB = tunables.maxBandwidth.map { $0 / 1_048_576 }
        if currentMiB.map({ $0 < neededMiB }) ?? true {
            // QEMU counts a page once per pass, so a guest that rewrites its working set faster
            // than a pass takes shows as dirtying exactly what the stream carries: a floor.
            list.append("--max-bandwidth \(neededMiB)M or more: the guest dirties at least \(saturatingInt64(dirty / 1_048_576)) MiB/s"
                        + (currentMiB.map { ", the limit is \($0) MiB/s" } ?? ", the link carried \(saturatingInt64(bandwidth / 1_048_576)) MiB/s"))
        }
        // Downtime needed to send what is left in one stop-and-copy at the measured rate.
        let downtime = saturatingInt64(Double(remaining) / max(bandwidth, 1) * 1000)
        if downtime > (tunables.downtimeLimitMilliseconds ?? 300) {
            list.append("--downtime-limit \(downtime): accept that much downtime so that QEMU stops the guest and sends the remaining \(remaining / 1_048_576) MiB in one go")
        }
        return list
    }
}

/// Rounds up and clamps to Int64: figures derived from QMP replies are the peer's numbers,
/// and a conversion of an out-of-range Double would trap.
func saturatingInt64(_ value: Double) -> Int64 {
    guard value.isFinite else { return value > 0 ? .max : 0 }
    let rounded = value.rounded(.up)
    if rounded >= 9.2e18 { return .max }
    if rounded <= -9.2e18 { return .min }
    return Int64(rounded)
}
