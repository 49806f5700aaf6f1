import CoreMetrics
import Foundation
import NBDProtocol

/// The metric handles of one export, created once when the server is built and shared by
/// every connection to it. On the data path a request costs two clock reads, a few atomic
/// adds (swift-prometheus counters and gauges) and one histogram record: no string work, no
/// dictionary lookup, no lock of ours. A failed request takes a lock, to find (or, the first
/// time for its command and errno, create) its counter.
final class ExportMetrics: @unchecked Sendable {
    let exportName: String
    private let factory: any MetricsFactory
    private let inFlight: Meter
    private let readBytes: Counter
    private let writtenBytes: Counter
    /// Indexed by `CommandSlot.rawValue` / `LatencySlot.rawValue`; built from `allCases`, so
    /// every index a slot yields is in range.
    private let succeeded: [Counter]
    /// The latency histograms' handlers, called directly: `Recorder.record<T>` is generic and
    /// was not specialized across the module boundary, so its `Double(value)` conversion cost
    /// about 300 instructions per request (callgrind); the handler's `record(Double)` is not generic.
    private let latency: [any RecorderHandler]
    /// Counters of failed requests, by `CommandSlot` × `ErrnoSlot`, created on first use.
    private let failedLock = NSLock()
    private var failed: [Counter?]

    init(exportName: String, factory: any MetricsFactory) {
        self.exportName = exportName
        self.factory = factory
        let export = [("export", exportName)]
        inFlight = Meter(label: NBDServerMetrics.requestsInFlight, dimensions: export, factory: factory)
        readBytes = Counter(label: NBDServerMetrics.readBytes, dimensions: export, factory: factory)
        writtenBytes = Counter(label: NBDServerMetrics.writtenBytes, dimensions: export, factory: factory)
        succeeded = CommandSlot.allCases.map { command in
            Counter(label: NBDServerMetrics.requests,
                    dimensions: export + [("command", command.label), ("result", "ok")], factory: factory)
        }
        latency = LatencySlot.allCases.map { command in
            factory.makeRecorder(label: NBDServerMetrics.requestDuration, dimensions: export + [("command", command.label)],
                                 aggregate: true)
        }
        failed = Array(repeating: nil, count: CommandSlot.allCases.count * ErrnoSlot.allCases.count)
    }

    /// A valid request is about to run: counts it in flight; returns its start time.
    @inline(__always)
    func begin() -> UInt64 {
        inFlight.increment()
        return MonotonicClock.now()
    }

    /// A request begun with `begin()` has been answered with `result`.
    func end(_ request: NBDRequest, result: NBDErrno, startedAt start: UInt64) {
        let command = CommandSlot(request.command)
        latency[LatencySlot(command).rawValue].record(Double(MonotonicClock.elapsed(since: start)) / 1e9)
        inFlight.decrement()
        guard result == .success else {
            countFailure(command, result)
            return
        }
        succeeded[command.rawValue].increment()
        // The validator bounded the length by the export size; clamping keeps a 64-bit length
        // from ever trapping in the conversion.
        switch command {
        case .read: readBytes.increment(by: Int64(clamping: request.length))
        case .write: writtenBytes.increment(by: Int64(clamping: request.length))
        default: break
        }
    }

    /// A request the validator refused (never executed, so no latency and not in flight).
    func refused(_ request: NBDRequest, error: NBDErrno) {
        countFailure(CommandSlot(request.command), error)
    }

    private func countFailure(_ command: CommandSlot, _ errno: NBDErrno) {
        let result = ErrnoSlot(errno)
        let index = command.rawValue * ErrnoSlot.allCases.count + result.rawValue
        let counter = failedLock.withLock { () -> Counter? in
            guard failed.indices.contains(index) else { return nil }
            if let existing = failed[index] { return existing }
            let created = Counter(label: NBDServerMetrics.requests,
                                  dimensions: [("export", exportName), ("command", command.label), ("result", result.label)],
                                  factory: factory)
            failed[index] = created
            return created
        }
        counter?.increment()
    }
}
