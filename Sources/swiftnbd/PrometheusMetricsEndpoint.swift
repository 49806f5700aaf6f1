import CoreMetrics
import Logging
import NBDServer
import PrometheusExposition

/// `swiftnbd serve --metrics`: `PrometheusExposition` as the process's swift-metrics backend,
/// and the HTTP endpoint that serves it. The only place of the CLI that knows about
/// Prometheus; the libraries report through the swift-metrics API alone.
final class PrometheusMetricsEndpoint: Sendable {
    let server: MetricsHTTPServer

    /// Bootstraps `MetricsSystem` (once per process, before the NBD server creates its metric
    /// handles) and prepares, without binding yet, the endpoint on `address`.
    init(address: ListenAddress, exports: [(name: String, device: Any)], logger: Logger) {
        let exposition = PrometheusExposition(histogramBuckets: NBDServerMetrics.histogramBuckets, help: NBDServerMetrics.help)
        MetricsSystem.bootstrap(exposition.factory)
        let qcow2 = Qcow2MetricsCollector(exports: exports, factory: exposition.factory)
        server = MetricsHTTPServer(address: address, logger: logger) {
            qcow2.refresh()
            return exposition.render()
        }
    }

    func start() throws { try server.start() }

    /// Where to scrape: `http://127.0.0.1:9100/metrics`, or the socket path and URL path.
    var urls: [String] {
        server.boundAddresses.map { $0.hasPrefix("unix:") ? "\($0) (HTTP, path /metrics)" : "http://\($0)/metrics" }
    }
    func stop() { server.stop() }
}
