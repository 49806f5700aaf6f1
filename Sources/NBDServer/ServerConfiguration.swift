import CoreMetrics
import NBDProtocol

/// Everything an `NBDServer` is started with.
public struct ServerConfiguration: Sendable {
    public var listenAddresses: [ListenAddress]
    public var exports: [ExportConfiguration]
    /// Connections beyond this are closed right after `accept` (QEMU's default is 100 too,
    /// CVE-2024-7409). 1 also withdraws CAN_MULTI_CONN.
    public var maxConnections: Int
    /// Seconds a client may take to reach transmission (TLS handshake included); 0 = unlimited.
    public var handshakeTimeout: Double
    /// Requests of one connection queued or executing at once.
    public var maxInFlightPerConnection: Int
    /// Worker threads per connection (started lazily).
    public var workerThreadsPerConnection: Int
    /// NOTLS / SELECTIVETLS / FORCEDTLS.
    public var tlsMode: ServerTLSMode
    /// Runs TLS handshakes; required unless `tlsMode` is `.off`.
    public var tlsProvider: (any ServerTLSProvider)?
    /// When the last client that reached transmission on a writable export leaves,
    /// flush, close and stop the server (block migration targets).
    public var exitOnDisconnect: Bool
    /// How long a graceful shutdown waits for connections to finish before cutting them.
    public var shutdownGracePeriod: Double
    /// Where the server's metrics go (docs/metrics.md); nil: `MetricsSystem.factory`, which is
    /// a no-op unless the program bootstrapped a backend, and then costs the data path nothing.
    public var metricsFactory: (any MetricsFactory)?

    public init(listenAddresses: [ListenAddress], exports: [ExportConfiguration],
                maxConnections: Int = 100, handshakeTimeout: Double = 10,
                maxInFlightPerConnection: Int = 32, workerThreadsPerConnection: Int = 8,
                tlsMode: ServerTLSMode = .off, tlsProvider: (any ServerTLSProvider)? = nil,
                exitOnDisconnect: Bool = false, shutdownGracePeriod: Double = 30,
                metricsFactory: (any MetricsFactory)? = nil) {
        self.listenAddresses = listenAddresses
        self.exports = exports
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.workerThreadsPerConnection = workerThreadsPerConnection
        self.tlsMode = tlsMode
        self.tlsProvider = tlsProvider
        self.exitOnDisconnect = exitOnDisconnect
        self.shutdownGracePeriod = shutdownGracePeriod
        self.metricsFactory = metricsFactory
    }
}
