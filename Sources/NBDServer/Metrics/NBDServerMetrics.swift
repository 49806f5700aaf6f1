/// The metrics the server reports through swift-metrics (`CoreMetrics`): names, help texts and
/// the latency buckets. Which backend receives them is the program's choice
/// (`MetricsSystem.bootstrap`, or `ServerConfiguration.metricsFactory`); docs/metrics.md lists
/// them with their labels.
///
/// Names follow Prometheus conventions (`swiftnbd_` prefix, base units in the name, counters end
/// in `_total`) and contain no digits: swift-prometheus 2.4.1 rewrites digits 1–8 in metric
/// names to `_`, so a name like `..._l2_...` would silently change.
public enum NBDServerMetrics {
    // Per export (label `export`).
    public static let requests = "swiftnbd_export_requests_total"
    public static let readBytes = "swiftnbd_export_read_bytes_total"
    public static let writtenBytes = "swiftnbd_export_written_bytes_total"
    public static let requestDuration = "swiftnbd_export_request_duration_seconds"
    public static let requestsInFlight = "swiftnbd_export_requests_in_flight"
    // Per export, qcow2 images only (filled in by whoever knows the image: the CLI).
    public static let metadataCacheHits = "swiftnbd_export_metadata_cache_hits_total"
    public static let metadataCacheMisses = "swiftnbd_export_metadata_cache_misses_total"
    public static let metadataWrites = "swiftnbd_export_metadata_writes_total"
    // Per server.
    public static let connections = "swiftnbd_connections"
    public static let connectionsAccepted = "swiftnbd_connections_accepted_total"
    public static let connectionsRefused = "swiftnbd_connections_refused_total"
    public static let tlsHandshakes = "swiftnbd_tls_handshakes_total"
    public static let credentialReloads = "swiftnbd_credential_reloads_total"

    /// One `# HELP` text per metric name (the swift-metrics API carries none; promtool wants one).
    public static let help: [String: String] = [
        requests: "NBD requests answered, by command and result (ok or the NBD errno name).",
        readBytes: "Bytes returned by successful READ requests.",
        writtenBytes: "Bytes written by successful WRITE requests.",
        requestDuration: "Time from a request being read to its reply being sent, by command (read, write, flush, other).",
        requestsInFlight: "Requests read and not yet answered.",
        metadataCacheHits: "qcow2 metadata cache lookups served from memory, by cache (l2, refcount).",
        metadataCacheMisses: "qcow2 metadata cache lookups that read the image file, by cache (l2, refcount).",
        metadataWrites: "qcow2 metadata writes to the image file, by kind (l1, l2, refcount).",
        connections: "Open client connections, by phase (negotiating, transmission) and transport (tcp, unix).",
        connectionsAccepted: "Client connections accepted, by transport.",
        connectionsRefused: "Client connections refused or dropped before transmission, by reason (limit, shutting_down, handshake_timeout).",
        tlsHandshakes: "TLS outcomes, by result (ok, refused) and refusal reason; plaintext clients turned away from TLS-only exports count as refused.",
        credentialReloads: "TLS credential reloads (SIGHUP), by result (ok, failed).",
    ]

    /// Latency buckets for `requestDuration`, in seconds: 10 µs (a page-cache read) to 10 s (a
    /// flush of a slow disk), three per decade.
    ///
    /// The latencies are recorded as seconds through an aggregating `Recorder`, not a `Timer`:
    /// the `Double` recorder's handler is called without swift-metrics' generic conversion,
    /// and the CLI backs it with a lock-free histogram (docs/metrics.md has the costs).
    public static let requestDurationBuckets: [Double] = [
        0.000_01, 0.000_025, 0.000_05,
        0.000_1, 0.000_25, 0.000_5,
        0.001, 0.002_5, 0.005,
        0.01, 0.025, 0.05,
        0.1, 0.25, 0.5,
        1, 2.5, 5, 10,
    ]

    /// The histogram families and their buckets, as a backend is configured with them.
    public static let histogramBuckets: [String: [Double]] = [requestDuration: requestDurationBuckets]
}
