import CoreMetrics
import Synchronization

/// A Prometheus histogram whose `record` is one bucket search and two relaxed atomic adds:
/// no lock, no allocation, no loop over the buckets above the value.
///
/// swift-prometheus' own histogram takes a lock and increments every cumulative bucket from
/// the value upward, about 530 instructions per record (callgrind, docs/metrics.md); recorded
/// once per NBD request, that alone was 3.3 % of the CPU a cached 4 KiB read costs. Here each
/// bucket counts only its own values and the cumulative counts are formed when a scrape asks.
///
/// A scrape reads the buckets one after another while requests go on, so a sample can miss
/// the observations that land during the read, never show a bucket twice: the cumulative
/// counts it renders are non-decreasing, and `_count` is their last value, by construction.
/// `_sum` is read on its own and may be a few requests ahead or behind.
public final class AtomicHistogram: RecorderHandler, Sendable {
    public let name: String
    public let labels: [(String, String)]
    /// Upper bounds, ascending and finite; the `+Inf` bucket is implicit.
    public let bounds: [Double]
    /// One counter per bound plus one for values above the last (`+Inf`).
    private let counts: [AtomicCounter]
    /// The sum in billionths of the unit (nanoseconds for seconds), so it adds atomically as
    /// an integer; 2^64 of them are 584 years of request time.
    private let sumBillionths = Atomic<UInt64>(0)
    /// `labels` as the text format writes them (`k="v",…`), escaped once rather than per scrape.
    private let renderedLabels: String

    /// - Parameter bounds: finite upper bounds; sorted and de-duplicated here.
    public init(name: String, labels: [(String, String)], bounds: [Double]) {
        self.name = name
        self.labels = labels
        self.bounds = Array(Set(bounds.filter { $0.isFinite })).sorted()
        counts = (0...self.bounds.count).map { _ in AtomicCounter() }
        renderedLabels = labels.map { "\($0.0)=\"\(PrometheusText.escapedLabelValue($0.1))\"" }.joined(separator: ",")
    }

    public func record(_ value: Int64) {
        record(Double(value))
    }

    public func record(_ value: Double) {
        // NaN and negative values (nothing of ours produces them, but the API accepts them)
        // count as zero rather than trapping in the conversion below.
        let value = value >= 0 ? value : 0
        var bucket = 0
        while bucket < bounds.count, value > bounds[bucket] { bucket += 1 }
        if counts.indices.contains(bucket) {
            counts[bucket].value.wrappingAdd(1, ordering: .relaxed)
        }
        let billionths = value * 1e9
        sumBillionths.wrappingAdd(billionths < 1.8e19 ? UInt64(billionths) : UInt64.max / 2, ordering: .relaxed)
    }

    /// Cumulative counts, one per bound and a last one for `+Inf` (the total), and the sum.
    public func snapshot() -> (cumulative: [UInt64], sum: Double) {
        var running: UInt64 = 0
        let cumulative = counts.map { counter -> UInt64 in
            running &+= counter.value.load(ordering: .relaxed)
            return running
        }
        return (cumulative, Double(sumBillionths.load(ordering: .relaxed)) / 1e9)
    }

    /// The series' `_bucket`, `_sum` and `_count` lines in the Prometheus text format (the
    /// family's `# TYPE` line is the caller's, once for all its series).
    public func render(into buffer: inout [UInt8]) {
        let (cumulative, sum) = snapshot()
        let separator = renderedLabels.isEmpty ? "" : ","
        for (index, count) in cumulative.enumerated() {
            let bound = index < bounds.count ? bounds[index].description : "+Inf"
            buffer += Array("\(name)_bucket{\(renderedLabels)\(separator)le=\"\(bound)\"} \(count)\n".utf8)
        }
        let braced = renderedLabels.isEmpty ? "" : "{\(renderedLabels)}"
        buffer += Array("\(name)_sum\(braced) \(sum)\n".utf8)
        buffer += Array("\(name)_count\(braced) \(cumulative.last ?? 0)\n".utf8)
    }
}

/// A heap cell for one atomic counter (`Atomic` is not copyable, so an array holds references).
private final class AtomicCounter: Sendable {
    let value = Atomic<UInt64>(0)
}
