/// Everything the server negotiation state machine needs, fixed for one connection.
public struct ServerNegotiationConfiguration: Hashable, Sendable {
    /// Exports in the order LIST reports them. Names should be unique; the first match wins.
    public var exports: [ExportDescriptor]
    public var tlsMode: ServerTLSMode
    /// False when the build or configuration has no TLS support at all: in `.off` mode
    /// STARTTLS then gets `ERR_UNSUP` instead of `ERR_POLICY`.
    public var tlsSupported: Bool
    /// The export an empty name ("default export") selects.
    public var defaultExportName: String
    /// Options per connection before the connection is dropped (DoS bound; nbdkit uses 32).
    public var maximumOptions: Int
    /// Option data larger than this closes the connection before it is read (never allocate
    /// attacker-sized buffers; QEMU uses 32 MiB, we default to 64 KiB — real options are tiny).
    public var maximumOptionLength: UInt32
    /// Offer NBD_OPT_STRUCTURED_REPLY (else `ERR_UNSUP`).
    public var allowsStructuredReplies: Bool
    /// Offer NBD_OPT_EXTENDED_HEADERS (else `ERR_UNSUP`).
    public var allowsExtendedHeaders: Bool

    public init(exports: [ExportDescriptor], tlsMode: ServerTLSMode = .off, tlsSupported: Bool = true,
                defaultExportName: String = "", maximumOptions: Int = 64,
                maximumOptionLength: UInt32 = 64 * 1024,
                allowsStructuredReplies: Bool = true, allowsExtendedHeaders: Bool = true) {
        self.exports = exports
        self.tlsMode = tlsMode
        self.tlsSupported = tlsSupported
        self.defaultExportName = defaultExportName
        self.maximumOptions = maximumOptions
        self.maximumOptionLength = maximumOptionLength
        self.allowsStructuredReplies = allowsStructuredReplies
        self.allowsExtendedHeaders = allowsExtendedHeaders
    }

    /// The export a client-supplied name selects ("" means `defaultExportName`).
    public func export(named name: String) -> ExportDescriptor? {
        let wanted = name.isEmpty ? defaultExportName : name
        return exports.first { $0.name == wanted }
    }
}
