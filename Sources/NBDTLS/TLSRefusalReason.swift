/// Why the server side of a TLS handshake turned a peer away, as a stable snake_case name.
///
/// The `TLSError` message says it in words for people; this says it for machines (metrics,
/// tests), so nothing downstream has to parse messages. An open set: a failure without a more
/// specific reason has none (`TLSError.refusalReason == nil`).
public struct TLSRefusalReason: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }

    /// Client certificates are required and the client sent none.
    public static let noClientCertificate = TLSRefusalReason("no_client_certificate")
    /// The client certificate is not signed by the server's CA.
    public static let unknownCA = TLSRefusalReason("unknown_ca")
    /// The client certificate has expired (or is not valid yet).
    public static let expired = TLSRefusalReason("expired")
    /// The PSK identity the client offered is not in the key file.
    public static let unknownPSKIdentity = TLSRefusalReason("unknown_psk_identity")
    /// The identity is known but the client's key for it differs.
    public static let wrongPSKKey = TLSRefusalReason("wrong_psk_key")
}
