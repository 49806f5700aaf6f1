/// Which reply framing a connection uses in transmission (docs/protocol.md §5.1).
public enum ReplyForm: Hashable, Sendable {
    /// Nothing negotiated: simple replies only, compact requests.
    case simple
    /// Structured replies negotiated: READ and BLOCK_STATUS answer in 20-byte chunks; others may
    /// use simple replies. Compact requests.
    case structured
    /// Extended headers negotiated: 32-byte requests and 32-byte chunks for every reply.
    case extended

    /// The request header layout clients use with this reply form.
    public var requestForm: NBDRequest.Form { self == .extended ? .extended : .compact }
}
