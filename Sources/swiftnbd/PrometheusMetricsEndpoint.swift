import CoreMetrics
import Logging
import NBDServer
import Prometheus

/// `swiftnbd serve --metrics`: swift-prometheus as the process's swift-metrics backend, and the
/// HTTP endpoint that serves its exposition. The only place that knows about Prometheus;
/// the libraries report through the swift-metrics API alone.
final class PrometheusMetricsEndpoint: Sendable {
    let server: MetricsHTTPServer

    /// Bootstraps `MetricsSystem` (once per process, before the NBD server creates its metric
    /// handles) and prepares, without binding yet, the endpoint on `address`.
    init(address: ListenAddress, exports: [(name: String, device: Any)], logger: Logger) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets[NBDServerMetrics.requestDuration] = NBDServerMetrics.requestDurationBuckets
        MetricsSystem.bootstrap(factory)
        let qcow2 = Qcow2MetricsCollector(exports: exports, factory: factory)
        server = MetricsHTTPServer(address: address, logger: logger) {
            qcow2.refresh()
            return PrometheusHelpLines.inserting(into: registry.emitToBuffer(), help: NBDServerMetrics.help)
        }
    }

    func start() throws { try server.start() }

    /// Where to scrape: `http://127.0.0.1:9100/metrics`, or the socket path and URL path.
    var urls: [String] {
        server.boundAddresses.map { $0.hasPrefix("unix:") ? "\($0) (HTTP, path /metrics)" : "http://\($0)/metrics" }
    }
    func stop() { server.stop() }
}
