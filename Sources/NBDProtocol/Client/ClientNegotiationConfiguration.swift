/// What a client wants out of the handshake (docs/protocol.md §4.1).
public struct ClientNegotiationConfiguration: Sendable, Hashable {
    /// How the handshake ends.
    public enum Mode: Sendable, Hashable {
        /// `NBD_OPT_GO` (falling back to `EXPORT_NAME`): enter transmission.
        case go
        /// `NBD_OPT_INFO` on one export, then `NBD_OPT_ABORT`.
        case info
        /// `NBD_OPT_LIST`, `NBD_OPT_INFO` on each export, then `NBD_OPT_ABORT` (`info --list`).
        case list
    }

    public var mode: Mode
    public var exportName: String
    public var tlsPolicy: ClientTLSPolicy
    /// Ask for 64-bit headers first (falls back to structured, then simple replies).
    public var requestExtendedHeaders: Bool
    /// Ask for structured replies when extended headers are refused or not requested.
    public var requestStructuredReplies: Bool
    /// Contexts for `NBD_OPT_SET_META_CONTEXT`, e.g. `base:allocation`, `qemu:allocation-depth`,
    /// `qemu:dirty-bitmap:NAME`. Only sent once structured or extended replies are on.
    public var metaContexts: [String]
    /// Also ask `NBD_OPT_LIST_META_CONTEXT` with no query, to show what the export offers.
    public var listMetaContexts: Bool
    /// Largest option reply payload accepted (strings are ≤ 4096 bytes; a SERVER reply holds two).
    public var maximumReplyLength: UInt32
    /// Largest number of replies accepted for one option (bounds a hostile server's LIST).
    public var maximumRepliesPerOption: Int

    public init(mode: Mode = .go, exportName: String = "", tlsPolicy: ClientTLSPolicy = .disable,
                requestExtendedHeaders: Bool = true, requestStructuredReplies: Bool = true,
                metaContexts: [String] = ["base:allocation"], listMetaContexts: Bool = false,
                maximumReplyLength: UInt32 = 16 * 1024, maximumRepliesPerOption: Int = 100_000) {
        self.mode = mode
        self.exportName = exportName
        self.tlsPolicy = tlsPolicy
        self.requestExtendedHeaders = requestExtendedHeaders
        self.requestStructuredReplies = requestStructuredReplies
        self.metaContexts = metaContexts
        self.listMetaContexts = listMetaContexts
        self.maximumReplyLength = maximumReplyLength
        self.maximumRepliesPerOption = maximumRepliesPerOption
    }
}
