import CGnuTLS

/// Owns a parsed GnuTLS priority string (`gnutls_priority_t`), shared by sessions.
final class PriorityCache: @unchecked Sendable {
    let handle: gnutls_priority_t
    let text: String

    init(_ text: String) throws {
        var priority: gnutls_priority_t?
        var errorPosition: UnsafePointer<CChar>?
        let rc = gnutls_priority_init(&priority, text, &errorPosition)
        if rc < 0 {
            let near = errorPosition.map { String(cString: $0) } ?? ""
            throw TLSError(.invalidArgument, "TLS priority string '\(text)' is invalid" + (near.isEmpty ? "" : " near '\(near)'"), gnutlsCode: rc)
        }
        handle = priority!
        self.text = text
    }

    deinit { gnutls_priority_deinit(handle) }
}
