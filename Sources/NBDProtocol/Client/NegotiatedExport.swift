/// Which reply format the transmission phase uses (docs/protocol.md §5.1).
public enum NBDReplyMode: Sendable, Hashable, CustomStringConvertible {
    /// Simple replies only (no negotiation, or the server refused both options).
    case simple
    /// `NBD_OPT_STRUCTURED_REPLY` was acknowledged: READ and BLOCK_STATUS answer in chunks.
    case structured
    /// `NBD_OPT_EXTENDED_HEADERS` was acknowledged: 32-byte requests and reply chunks.
    case extended

    public var description: String {
        switch self {
        case .simple: "simple"
        case .structured: "structured"
        case .extended: "extended"
        }
    }
}

/// How the server greeted us.
public enum HandshakeStyle: Sendable, Hashable, CustomStringConvertible {
    case oldstyle
    case newstyle
    case fixedNewstyle

    public var description: String {
        switch self {
        case .oldstyle: "oldstyle"
        case .newstyle: "newstyle"
        case .fixedNewstyle: "fixed newstyle"
        }
    }
}

/// A metadata context the server selected, with its connection-local id.
public struct NegotiatedMetaContext: Sendable, Hashable {
    public var id: UInt32
    public var name: String
    public init(id: UInt32, name: String) {
        self.id = id
        self.name = name
    }
}

/// Everything learned about one export during the handshake.
public struct NegotiatedExport: Sendable, Hashable {
    /// The name we asked for.
    public var requestedName: String
    /// `NBD_INFO_NAME`, when the server sent it.
    public var canonicalName: String?
    /// `NBD_INFO_DESCRIPTION`, when the server sent it.
    public var description: String?
    public var size: UInt64
    public var flags: TransmissionFlags
    /// `NBD_INFO_BLOCK_SIZE` as advertised (validated); nil when the server sent none.
    public var blockSizes: NBDBlockSizes?
    public var replyMode: NBDReplyMode
    /// Contexts selected by `SET_META_CONTEXT` (valid only on this connection).
    public var metaContexts: [NegotiatedMetaContext]
    /// Contexts `LIST_META_CONTEXT` reported, when asked.
    public var availableMetaContexts: [String]
    public var tlsActive: Bool
    public var handshake: HandshakeStyle
    /// True when the server refused GO and `EXPORT_NAME` ended the handshake.
    public var usedExportNameFallback: Bool

    public init(requestedName: String, canonicalName: String? = nil, description: String? = nil,
                size: UInt64, flags: TransmissionFlags, blockSizes: NBDBlockSizes? = nil,
                replyMode: NBDReplyMode = .simple, metaContexts: [NegotiatedMetaContext] = [],
                availableMetaContexts: [String] = [], tlsActive: Bool = false,
                handshake: HandshakeStyle = .fixedNewstyle, usedExportNameFallback: Bool = false) {
        self.requestedName = requestedName
        self.canonicalName = canonicalName
        self.description = description
        self.size = size
        self.flags = flags
        self.blockSizes = blockSizes
        self.replyMode = replyMode
        self.metaContexts = metaContexts
        self.availableMetaContexts = availableMetaContexts
        self.tlsActive = tlsActive
        self.handshake = handshake
        self.usedExportNameFallback = usedExportNameFallback
    }

    /// The id of a selected context, by name.
    public func metaContextID(_ name: String) -> UInt32? {
        metaContexts.first { $0.name == name }?.id
    }
}

/// One entry of `NBD_OPT_LIST`, with what `NBD_OPT_INFO` said about it.
public struct ListedExport: Sendable, Hashable {
    public var name: String
    /// Text after the name in `NBD_REP_SERVER`.
    public var listDescription: String
    /// The INFO result, or nil when INFO failed (`infoError` says why).
    public var info: NegotiatedExport?
    public var infoError: ClientNegotiationError?

    public init(name: String, listDescription: String, info: NegotiatedExport? = nil, infoError: ClientNegotiationError? = nil) {
        self.name = name
        self.listDescription = listDescription
        self.info = info
        self.infoError = infoError
    }
}
