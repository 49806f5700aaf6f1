import NBDProtocol

/// How to negotiate one client connection.
public struct NBDClientConfiguration: Sendable {
    public var exportName: String
    public var tlsPolicy: ClientTLSPolicy
    /// Required when `tlsPolicy` is not `.disable` (allow without a provider acts as disable).
    public var tlsProvider: (any ClientTLSProvider)?
    /// Name checked against the server certificate.
    public var tlsHostname: String?
    public var requestExtendedHeaders: Bool
    public var requestStructuredReplies: Bool
    /// Metadata contexts to select, e.g. `base:allocation`, `qemu:allocation-depth`,
    /// `qemu:dirty-bitmap:NAME`.
    public var metaContexts: [String]
    /// Ask the server which contexts exist (for `info`).
    public var listMetaContexts: Bool
    /// Requests in flight at once on one connection; further submissions wait.
    public var maximumInFlight: Int
    /// Seconds the server may take for each read and write of the handshake (TLS included);
    /// 0 waits forever. A server that accepts and then says nothing fails the connect.
    public var handshakeTimeout: Double = 30

    public init(exportName: String = "", tlsPolicy: ClientTLSPolicy = .disable, tlsProvider: (any ClientTLSProvider)? = nil,
                tlsHostname: String? = nil, requestExtendedHeaders: Bool = true, requestStructuredReplies: Bool = true,
                metaContexts: [String] = ["base:allocation"], listMetaContexts: Bool = false, maximumInFlight: Int = 64) {
        self.exportName = exportName
        self.tlsPolicy = tlsPolicy
        self.tlsProvider = tlsProvider
        self.tlsHostname = tlsHostname
        self.requestExtendedHeaders = requestExtendedHeaders
        self.requestStructuredReplies = requestStructuredReplies
        self.metaContexts = metaContexts
        self.listMetaContexts = listMetaContexts
        self.maximumInFlight = maximumInFlight
    }

    /// The configuration a URI describes. A URI that needs TLS gets its provider from the
    /// `ClientTLSProviderFactory` conformance of `NBDURI` (Sources/NBDClient/TLS/).
    public init(uri: NBDURI) throws {
        self.init(exportName: uri.exportName, tlsPolicy: uri.tlsPolicy, tlsHostname: uri.certificateHostname)
        if uri.tlsPolicy != .disable {
            guard let factory = uri as Any as? any ClientTLSProviderFactory else {
                throw NBDClientError(.tls, "\(uri) requires TLS, but this build has no client TLS support")
            }
            tlsProvider = try factory.makeTLSProvider()
        }
    }

    func negotiation(mode: ClientNegotiationConfiguration.Mode) -> ClientNegotiationConfiguration {
        ClientNegotiationConfiguration(
            mode: mode, exportName: exportName,
            tlsPolicy: tlsProvider == nil && tlsPolicy == .allow ? .disable : tlsPolicy,
            requestExtendedHeaders: requestExtendedHeaders, requestStructuredReplies: requestStructuredReplies,
            metaContexts: metaContexts, listMetaContexts: listMetaContexts)
    }
}
