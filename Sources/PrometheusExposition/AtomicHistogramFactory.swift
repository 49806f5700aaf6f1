import CoreMetrics
import Foundation

/// A swift-metrics factory that hands out an `AtomicHistogram` for the aggregating recorders
/// whose label it was told the buckets of, and passes everything else to `base`.
///
/// The libraries keep reporting through the swift-metrics API alone; only the backend of the
/// latency histograms changes (see `AtomicHistogram` for why).
public final class AtomicHistogramFactory: MetricsFactory, @unchecked Sendable {
    private let base: any MetricsFactory
    private let bucketsByLabel: [String: [Double]]
    private let lock = NSLock()
    /// Every histogram made, by family name, in the order made; one per label set.
    private var families: [String: [AtomicHistogram]] = [:]

    public init(base: any MetricsFactory, buckets bucketsByLabel: [String: [Double]]) {
        self.base = base
        self.bucketsByLabel = bucketsByLabel
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate, let buckets = bucketsByLabel[label] else {
            return base.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
        }
        return lock.withLock {
            let series = families[label, default: []]
            if let existing = series.first(where: { Self.sameLabels($0.labels, dimensions) }) { return existing }
            let created = AtomicHistogram(name: label, labels: dimensions, bounds: buckets)
            families[label] = series + [created]
            return created
        }
    }

    /// Every histogram family this factory made, as the text format has them: one `# TYPE`
    /// line, then each series, families in name order.
    public func renderHistograms() -> [UInt8] {
        let snapshot = lock.withLock { families }
        var buffer: [UInt8] = []
        for name in snapshot.keys.sorted() {
            buffer += Array("# TYPE \(name) histogram\n".utf8)
            for histogram in snapshot[name] ?? [] { histogram.render(into: &buffer) }
        }
        return buffer
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        guard let histogram = handler as? AtomicHistogram else { return base.destroyRecorder(handler) }
        lock.withLock {
            families[histogram.name]?.removeAll { $0 === histogram }
            if families[histogram.name]?.isEmpty == true { families[histogram.name] = nil }
        }
    }

    private static func sameLabels(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    // Everything else is the base factory's.
    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        base.makeCounter(label: label, dimensions: dimensions)
    }
    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        base.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }
    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        base.makeMeter(label: label, dimensions: dimensions)
    }
    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        base.makeTimer(label: label, dimensions: dimensions)
    }
    public func destroyCounter(_ handler: any CounterHandler) { base.destroyCounter(handler) }
    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        base.destroyFloatingPointCounter(handler)
    }
    public func destroyMeter(_ handler: any MeterHandler) { base.destroyMeter(handler) }
    public func destroyTimer(_ handler: any TimerHandler) { base.destroyTimer(handler) }
}
