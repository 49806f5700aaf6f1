import CGnuTLS
import Glibc

/// Owns a parsed GnuTLS priority string (`gnutls_priority_t`), shared by sessions.
final class PriorityCache: @unchecked Sendable {
    let handle: gnutls_priority_t
    let text: String

    init(_ text: String) throws {
        var priority: gnutls_priority_t?
        // On failure GnuTLS points `errorPosition` into the string it was given, so that C
        // string must still be alive when the position is read: keep it for the whole call and
        // turn the pointer into an offset (and the rest of the text) before leaving the closure.
        let (rc, failure): (Int32, (offset: Int, rest: String)?) = text.withCString { cText in
            var errorPosition: UnsafePointer<CChar>?
            let rc = gnutls_priority_init(&priority, cText, &errorPosition)
            guard rc < 0, let position = errorPosition else { return (rc, nil) }
            let length = strlen(cText)
            let offset = cText.distance(to: position)
            guard offset >= 0, offset <= length else { return (rc, nil) }
            return (rc, (offset, String(cString: position)))
        }
        if rc < 0 {
            var message = "TLS priority string '\(text)' is invalid"
            if let failure {
                message += " at byte \(failure.offset)"
                if !failure.rest.isEmpty { message += " near '\(failure.rest)'" }
            }
            throw TLSError(.invalidArgument, message, gnutlsCode: rc)
        }
        guard let priority else {
            throw TLSError(.invalidArgument, "TLS priority string '\(text)': GnuTLS returned no priority cache", gnutlsCode: rc)
        }
        handle = priority
        self.text = text
    }

    deinit { gnutls_priority_deinit(handle) }
}
