/// What a client does about TLS (libnbd's LIBNBD_TLS_DISABLE/ALLOW/REQUIRE; docs/protocol.md §4.2).
public enum ClientTLSPolicy: Sendable, Hashable, CustomStringConvertible {
    /// Never send STARTTLS.
    case disable
    /// Try STARTTLS first; continue in plaintext if the server refuses it.
    case allow
    /// STARTTLS must succeed; any downgrade (oldstyle, no fixed newstyle, a refused STARTTLS)
    /// fails the connection before an export name is sent.
    case require

    public var description: String {
        switch self {
        case .disable: "disable"
        case .allow: "allow"
        case .require: "require"
        }
    }
}
