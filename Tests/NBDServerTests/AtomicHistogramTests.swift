import CoreMetrics
import Foundation
import PrometheusExposition
import Prometheus
import Testing
import TestSupport

/// The lock-free latency histogram must render what swift-prometheus' own histogram renders
/// for the same values (the exposition did not change when the backend did), count every
/// value under concurrent recording, and never trap on values the API lets through.
@Suite("Atomic histogram")
struct AtomicHistogramTests {
    let bounds = [0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1]

    /// The series lines of a histogram family in an exposition, sorted, without `#` lines.
    func series(_ exposition: [UInt8], _ name: String) -> [String] {
        String(decoding: exposition, as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix(name) }.map(String.init).sorted()
    }

    @Test("same samples as swift-prometheus' histogram for a seeded random set of values (sum to 1 ns)")
    func matchesSwiftPrometheus() throws {
        var random = SplitMix64(seed: 0x5eed_1157)
        let registry = PrometheusCollectorRegistry()
        // swift-prometheus' histogram as the CLI used to configure it, through its swift-metrics factory.
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["h"] = bounds
        let reference = factory.makeRecorder(label: "h", dimensions: [("export", "a\"b\\c")], aggregate: true)
        let ours = AtomicHistogram(name: "h", labels: [("export", "a\"b\\c")], bounds: bounds)
        var values: [Double] = bounds + [0, 2, 1e-7]   // every boundary lands in its own bucket
        for _ in 0..<5000 { values.append(pow(10, Double(random.next() % 700) / 100 - 6)) }
        for value in values {
            reference.record(value)
            ours.record(value)
        }
        var rendered: [UInt8] = []
        ours.render(into: &rendered)
        let expected = series(registry.emitToBuffer(), "h")
        let actual = series(rendered, "h")
        #expect(expected.count == actual.count)
        for (want, got) in zip(expected, actual) {
            if want.hasPrefix("h_sum") {
                let wantSum = try #require(Double(want.split(separator: " ").last ?? ""))
                let gotSum = try #require(Double(got.split(separator: " ").last ?? ""))
                #expect(abs(wantSum - gotSum) <= Double(values.count) * 1e-9, "\(want) vs \(got)")
            } else {
                #expect(want == got)
            }
        }
    }

    @Test("counts every value recorded from several threads at once")
    func concurrent() async {
        let histogram = AtomicHistogram(name: "h", labels: [], bounds: bounds)
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for i in 0..<18_000 { histogram.record(bounds[(task + i) % bounds.count]) }
                }
            }
        }
        let (cumulative, sum) = histogram.snapshot()
        // 18,000 values per task, a multiple of the 6 bounds: each bucket gets 24,000.
        #expect(cumulative == [24_000, 48_000, 72_000, 96_000, 120_000, 144_000, 144_000])
        #expect(abs(sum - bounds.reduce(0, +) * 24_000) < 144_000 * 1e-9)
    }

    @Test("NaN, negative, infinite and huge values are counted, never trap")
    func hostileValues() {
        let histogram = AtomicHistogram(name: "h", labels: [], bounds: [1, .nan, .infinity, 1, 0.5])
        #expect(histogram.bounds == [0.5, 1])
        for value in [Double.nan, -1, -.infinity, .infinity, 1e300, Double.greatestFiniteMagnitude] { histogram.record(value) }
        histogram.record(Int64.max)
        histogram.record(Int64.min)
        let (cumulative, sum) = histogram.snapshot()
        #expect(cumulative == [4, 4, 8])
        #expect(sum.isFinite)
    }

    @Test("the factory gives one histogram per label set, other recorders to the base, and renders every family")
    func factory() {
        let registry = PrometheusCollectorRegistry()
        let factory = AtomicHistogramFactory(base: PrometheusMetricsFactory(registry: registry), buckets: ["lat": [1]])
        let a = factory.makeRecorder(label: "lat", dimensions: [("x", "1")], aggregate: true)
        let again = factory.makeRecorder(label: "lat", dimensions: [("x", "1")], aggregate: true)
        let b = factory.makeRecorder(label: "lat", dimensions: [("x", "2")], aggregate: true)
        #expect(a === again && a !== b && a is AtomicHistogram)
        #expect(!(factory.makeRecorder(label: "other", dimensions: [], aggregate: true) is AtomicHistogram))
        #expect(!(factory.makeRecorder(label: "lat", dimensions: [], aggregate: false) is AtomicHistogram))
        a.record(0.5)
        b.record(2.0)
        let text = String(decoding: factory.renderHistograms(), as: UTF8.self)
        #expect(text.components(separatedBy: "# TYPE lat histogram\n").count == 2)
        #expect(text.contains("lat_bucket{x=\"1\",le=\"1.0\"} 1\n") && text.contains("lat_bucket{x=\"2\",le=\"1.0\"} 0\n"))
        #expect(text.contains("lat_count{x=\"2\"} 1\n"))
        factory.destroyRecorder(b)
        #expect(!String(decoding: factory.renderHistograms(), as: UTF8.self).contains("x=\"2\""))
    }
}
