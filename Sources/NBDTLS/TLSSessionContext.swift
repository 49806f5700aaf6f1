import CGnuTLS

/// What GnuTLS callbacks need from a session and what they learn during the handshake.
/// Reached from C through `gnutls_session_get_ptr`; retained by the `TLSSession`.
final class TLSSessionContext: @unchecked Sendable {
    let pskKeys: PSKKeyFile?
    /// The PSK identity the client offered (server side).
    var offeredPSKIdentity: String?
    /// Set when the client offered an identity that is not in the key file.
    var unknownPSKIdentity: String?

    init(pskKeys: PSKKeyFile?) { self.pskKeys = pskKeys }
}

/// Owns one `gnutls_session_t`.
final class GnuTLSSessionHandle: @unchecked Sendable {
    let raw: gnutls_session_t

    init(server: Bool) throws {
        var session: gnutls_session_t?
        let flags = server ? swiftnbd_gnutls_server_flags() : swiftnbd_gnutls_client_flags()
        try gnutlsCheck(gnutls_init(&session, flags), .handshake, "cannot create a TLS session")
        raw = session!
    }

    deinit { gnutls_deinit(raw) }
}
