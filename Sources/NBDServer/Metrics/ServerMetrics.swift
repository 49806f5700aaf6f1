import CoreMetrics
import NBDTLS

/// The server-wide metric handles and each export's `ExportMetrics`, all created once in
/// `NBDServer.init`. When the factory is swift-metrics' no-op handler (nothing bootstrapped),
/// `exports` is empty and the data path skips metrics entirely, clock reads included.
final class ServerMetrics: @unchecked Sendable {
    enum Transport: Int, CaseIterable {
        case tcp, unix
        var label: String { self == .tcp ? "tcp" : "unix" }
    }

    enum Phase: Int, CaseIterable {
        case negotiating, transmission
        var label: String { self == .negotiating ? "negotiating" : "transmission" }
    }

    enum Refusal: Int, CaseIterable {
        case limit, shuttingDown, handshakeTimeout
        var label: String {
            switch self {
            case .limit: "limit"
            case .shuttingDown: "shutting_down"
            case .handshakeTimeout: "handshake_timeout"
            }
        }
    }

    /// The `reason` values of refused TLS outcomes; "other" covers every unnamed failure.
    static let tlsRefusalReasons: [TLSRefusalReason] = [
        .noClientCertificate, .unknownCA, .expired, .dnNotAuthorized, .unknownPSKIdentity, .wrongPSKKey,
        .plaintextToTLSOnlyExport, .other,
    ]

    let enabled: Bool
    private let exportMetrics: [String: ExportMetrics]
    /// By `Phase.rawValue * 2 + Transport.rawValue`.
    private let open: [Meter]
    private let accepted: [Counter]
    private let refused: [Counter]
    private let tlsOK: Counter
    private let tlsRefused: [TLSRefusalReason: Counter]
    private let reloadOK: Counter
    private let reloadFailed: Counter

    init(factory: any MetricsFactory, exportNames: [String]) {
        enabled = !(factory is NOOPMetricsHandler)
        exportMetrics = enabled
            ? Dictionary(exportNames.map { ($0, ExportMetrics(exportName: $0, factory: factory)) }, uniquingKeysWith: { first, _ in first })
            : [:]
        open = Phase.allCases.flatMap { phase in
            Transport.allCases.map { transport in
                Meter(label: NBDServerMetrics.connections,
                      dimensions: [("phase", phase.label), ("transport", transport.label)], factory: factory)
            }
        }
        accepted = Transport.allCases.map {
            Counter(label: NBDServerMetrics.connectionsAccepted, dimensions: [("transport", $0.label)], factory: factory)
        }
        refused = Refusal.allCases.map {
            Counter(label: NBDServerMetrics.connectionsRefused, dimensions: [("reason", $0.label)], factory: factory)
        }
        tlsOK = Counter(label: NBDServerMetrics.tlsHandshakes, dimensions: [("result", "ok"), ("reason", "none")], factory: factory)
        tlsRefused = Dictionary(Self.tlsRefusalReasons.map { reason in
            (reason, Counter(label: NBDServerMetrics.tlsHandshakes, dimensions: [("result", "refused"), ("reason", reason.name)],
                             factory: factory))
        }, uniquingKeysWith: { first, _ in first })
        reloadOK = Counter(label: NBDServerMetrics.credentialReloads, dimensions: [("result", "ok")], factory: factory)
        reloadFailed = Counter(label: NBDServerMetrics.credentialReloads, dimensions: [("result", "failed")], factory: factory)
    }

    /// The handles of one export (looked up once per connection), nil when metrics are off.
    func export(named name: String) -> ExportMetrics? { exportMetrics[name] }

    func connectionAccepted(_ transport: Transport) {
        accepted[transport.rawValue].increment()
        openGauge(.negotiating, transport).increment()
    }

    func connectionEnteredTransmission(_ transport: Transport) {
        openGauge(.negotiating, transport).decrement()
        openGauge(.transmission, transport).increment()
    }

    func connectionClosed(_ transport: Transport, phase: Phase) {
        openGauge(phase, transport).decrement()
    }

    func connectionRefused(_ reason: Refusal) {
        refused[reason.rawValue].increment()
    }

    func tlsSucceeded() { tlsOK.increment() }

    /// A TLS refusal; reasons outside the named set count as "other".
    func tlsRefused(_ reason: TLSRefusalReason?) {
        let counter = reason.flatMap { tlsRefused[$0] } ?? tlsRefused[.other]
        counter?.increment()
    }

    func credentialsReloaded(ok: Bool) {
        (ok ? reloadOK : reloadFailed).increment()
    }

    private func openGauge(_ phase: Phase, _ transport: Transport) -> Meter {
        open[phase.rawValue * Transport.allCases.count + transport.rawValue]
    }
}

extension TLSRefusalReason {
    /// Authenticated, but the certificate's DN is not on the `--tls-authz` list (decided by
    /// the TLS layer after a successful handshake).
    static let dnNotAuthorized = TLSRefusalReason("dn_not_authorized")
    /// A plaintext client asked for a TLS-only export (or anything while TLS is required).
    static let plaintextToTLSOnlyExport = TLSRefusalReason("plaintext_to_tls_only_export")
    /// Any other failed handshake (timeout, no common cipher, not TLS at all, …).
    static let other = TLSRefusalReason("other")
}
