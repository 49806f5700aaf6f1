/// The option-haggling state of one connection, for one TLS epoch.
///
/// A connection starts with `plaintext(clientFlags:)`. A successful STARTTLS does not edit this
/// value: it is thrown away and `afterTLS(...)` builds a new one from the client flags alone, so
/// nothing negotiated in plaintext (structured replies, extended headers, meta contexts) can
/// survive into the encrypted session — the CVE-2021-3716 class is ruled out by construction.
struct ServerOptionPhase: Hashable, Sendable {
    /// Meta contexts chosen by the last SET_META_CONTEXT, bound to the export it named.
    struct MetaContextSelection: Hashable, Sendable {
        var exportName: String
        var contexts: [NBDMetaContext]
    }

    let clientFlags: ClientFlags
    let tlsActive: Bool
    let peerIdentity: String?
    /// Set when the TLS peer authenticated but is not authorised: every option is refused.
    let authorizationRefusal: String?

    var structuredReplies = false
    var extendedHeaders = false
    var metaSelection: MetaContextSelection?

    private init(clientFlags: ClientFlags, tlsActive: Bool, peerIdentity: String?, authorizationRefusal: String?) {
        self.clientFlags = clientFlags
        self.tlsActive = tlsActive
        self.peerIdentity = peerIdentity
        self.authorizationRefusal = authorizationRefusal
    }

    static func plaintext(clientFlags: ClientFlags) -> ServerOptionPhase {
        ServerOptionPhase(clientFlags: clientFlags, tlsActive: false, peerIdentity: nil, authorizationRefusal: nil)
    }

    /// The only constructor used after STARTTLS: it cannot take any plaintext-negotiated state.
    static func afterTLS(clientFlags: ClientFlags, peerIdentity: String?, authorizationRefusal: String?) -> ServerOptionPhase {
        ServerOptionPhase(clientFlags: clientFlags, tlsActive: true, peerIdentity: peerIdentity,
                          authorizationRefusal: authorizationRefusal)
    }

    var isFixedNewstyle: Bool { clientFlags.contains(.fixedNewstyle) }
    var structuredOrExtended: Bool { structuredReplies || extendedHeaders }
}
