import CoreMetrics
import Foundation
import NBDProtocol

/// The metric handles of one export, created once when the server is built and shared by
/// every connection to it. On the data path a request costs two clock reads, a few atomic
/// adds (counters and gauges) and one histogram record: no string work, no dictionary
/// lookup, no lock of ours. A failed request takes a lock, to find (or, the first time for its
/// command and errno, create) its counter.
///
/// The handlers are called directly rather than through swift-metrics' `Counter`, `Meter` and
/// `Recorder` wrappers: those are generic over the value's type, and were not specialized
/// across the module boundary (`Recorder.record<T>`'s conversion alone cost about 300
/// instructions per request, callgrind); each wrapper is also one more reference to retain.
final class ExportMetrics: @unchecked Sendable {
    let exportName: String
    private let factory: any MetricsFactory
    private let inFlight: any MeterHandler
    private let readBytes: any CounterHandler
    private let writtenBytes: any CounterHandler
    private let succeeded: PerCommand<any CounterHandler>
    /// READ, WRITE and FLUSH have a histogram each; the other commands share one.
    private let latency: PerCommand<any RecorderHandler>
    /// Counters of failed requests, by `CommandSlot` × `ErrnoSlot`, created on first use.
    private let failedLock = NSLock()
    private var failed: [Counter?]

    init(exportName: String, factory: any MetricsFactory) {
        self.exportName = exportName
        self.factory = factory
        let export = [("export", exportName)]
        inFlight = factory.makeMeter(label: NBDServerMetrics.requestsInFlight, dimensions: export)
        readBytes = factory.makeCounter(label: NBDServerMetrics.readBytes, dimensions: export)
        writtenBytes = factory.makeCounter(label: NBDServerMetrics.writtenBytes, dimensions: export)
        succeeded = PerCommand { command in
            factory.makeCounter(label: NBDServerMetrics.requests, dimensions: export + [("command", command.label), ("result", "ok")])
        }
        let histograms = Dictionary(uniqueKeysWithValues: LatencySlot.allCases.map { slot in
            (slot, factory.makeRecorder(label: NBDServerMetrics.requestDuration, dimensions: export + [("command", slot.label)],
                                        aggregate: true))
        })
        latency = PerCommand { command in histograms[LatencySlot(command)] ?? NOOPMetricsHandler.instance }
        failed = Array(repeating: nil, count: CommandSlot.allCases.count * ErrnoSlot.allCases.count)
    }

    /// A valid request is about to run: counts it in flight; returns its start time.
    @inline(__always)
    func begin() -> UInt64 {
        inFlight.increment(by: 1)
        return MonotonicClock.now()
    }

    /// A request begun with `begin()` has been answered with `result`.
    func end(_ request: NBDRequest, result: NBDErrno, startedAt start: UInt64) {
        let command = CommandSlot(request.command)
        let seconds = Double(MonotonicClock.elapsed(since: start)) / 1e9
        latency.with(command) { $0.record(seconds) }
        inFlight.decrement(by: 1)
        guard result == .success else {
            countFailure(command, result)
            return
        }
        succeeded.with(command) { $0.increment(by: 1) }
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
