import CoreMetrics
import Prometheus

/// The swift-metrics backend of `swiftnbd serve --metrics` and what a scrape returns.
///
/// swift-prometheus holds and renders the counters and gauges; the latency histograms named
/// in `histogramBuckets` are `AtomicHistogram`s, rendered after them in the same format; help
/// lines are added for every family `help` names. Tests build the same object, so they read
/// exactly what a scrape shows.
public final class PrometheusExposition: Sendable {
    public let registry: PrometheusCollectorRegistry
    public let factory: AtomicHistogramFactory
    private let help: [String: String]

    public init(histogramBuckets: [String: [Double]], help: [String: String]) {
        registry = PrometheusCollectorRegistry()
        factory = AtomicHistogramFactory(base: PrometheusMetricsFactory(registry: registry), buckets: histogramBuckets)
        self.help = help
    }

    /// The whole exposition, as `GET /metrics` returns it.
    public func render() -> [UInt8] {
        PrometheusHelpLines.inserting(into: registry.emitToBuffer() + factory.renderHistograms(), help: help)
    }
}
