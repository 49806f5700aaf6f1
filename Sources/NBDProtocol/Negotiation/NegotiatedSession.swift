/// What negotiation agreed on, handed to the transmission engine with `.enterTransmission`.
public struct NegotiatedSession: Hashable, Sendable {
    /// The export the client selected (canonical name, size, block sizes…).
    public var export: ExportDescriptor
    public var structuredReplies: Bool
    public var extendedHeaders: Bool
    /// Selected metadata contexts by the id sent in SET_META_CONTEXT replies. Empty when none
    /// were selected for this export (then BLOCK_STATUS is refused).
    public var metaContexts: [UInt32: NBDMetaContext]
    /// The client listed NBD_INFO_BLOCK_SIZE in GO, so it promised to honour the constraints.
    public var clientRequestedBlockSizes: Bool
    /// Flags exactly as advertised to the client (SEND_DF only with structured/extended replies).
    public var transmissionFlags: TransmissionFlags
    public var clientFlags: ClientFlags
    public var tlsActive: Bool
    /// Who the peer proved to be in the TLS handshake, for logs.
    public var peerIdentity: String?

    public init(export: ExportDescriptor, structuredReplies: Bool, extendedHeaders: Bool,
                metaContexts: [UInt32: NBDMetaContext], clientRequestedBlockSizes: Bool,
                transmissionFlags: TransmissionFlags, clientFlags: ClientFlags,
                tlsActive: Bool, peerIdentity: String?) {
        self.export = export
        self.structuredReplies = structuredReplies
        self.extendedHeaders = extendedHeaders
        self.metaContexts = metaContexts
        self.clientRequestedBlockSizes = clientRequestedBlockSizes
        self.transmissionFlags = transmissionFlags
        self.clientFlags = clientFlags
        self.tlsActive = tlsActive
        self.peerIdentity = peerIdentity
    }

    public var exportName: String { export.name }
    public var exportSize: UInt64 { export.size }
    public var blockSizes: NBDBlockSizes { export.blockSizes }

    /// Reply framing for transmission: extended headers win over structured replies.
    public var replyForm: ReplyForm {
        extendedHeaders ? .extended : structuredReplies ? .structured : .simple
    }

    /// Request header layout the client will use.
    public var requestForm: NBDRequest.Form { replyForm.requestForm }

    /// The id of a selected context, if any.
    public func contextID(for context: NBDMetaContext) -> UInt32? {
        metaContexts.first { $0.value == context }?.key
    }
}
