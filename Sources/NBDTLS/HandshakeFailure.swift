import CGnuTLS

/// Turns a failed GnuTLS handshake into a sentence that says why.
enum HandshakeFailure {
    static func describe(_ rc: Int32, role: TLSSession.Role, session: gnutls_session_t, context: TLSSessionContext,
                         usesPSK: Bool, pskUsername: String?, hostname: String?, timeout: Double,
                         haveClientCertificate: Bool) -> TLSError {
        let peer = role == .server ? "client" : "server"
        if role == .server, let unknown = context.unknownPSKIdentity {
            return TLSError(.psk, "unknown PSK identity '\(unknown)'", gnutlsCode: rc, refusalReason: .unknownPSKIdentity)
        }
        // TLS 1.3 reports a wrong PSK as a bad binder (illegal parameter), TLS 1.2 as a
        // Finished message that does not decrypt.
        if usesPSK && [GNUTLS_E_DECRYPTION_FAILED, GNUTLS_E_MAC_VERIFY_FAILED, GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER].contains(rc) {
            let who = role == .server ? (context.offeredPSKIdentity ?? "?") : (pskUsername ?? "?")
            return TLSError(.psk, "the PSK key for identity '\(who)' does not match the \(peer)'s key", gnutlsCode: rc,
                            refusalReason: role == .server ? .wrongPSKKey : nil)
        }
        switch rc {
        case GNUTLS_E_TIMEDOUT:
            return TLSError(.timedOut, "the TLS handshake did not finish within \(formatSeconds(timeout))", gnutlsCode: rc)
        case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR, GNUTLS_E_CERTIFICATE_ERROR:
            let status = gnutls_session_get_verify_cert_status(session)
            return TLSError(.untrustedPeer, VerificationStatus.message(role: "\(peer) certificate", status: status, hostname: hostname), gnutlsCode: rc,
                            refusalReason: role == .server ? VerificationStatus.refusalReason(status) : nil)
        case GNUTLS_E_NO_CERTIFICATE_FOUND, GNUTLS_E_CERTIFICATE_REQUIRED:
            if role == .server {
                return TLSError(.missingPeerCertificate, "the client presented no certificate, but this server requires one signed by its CA", gnutlsCode: rc,
                                refusalReason: .noClientCertificate)
            }
            return TLSError(.missingPeerCertificate, "the server presented no certificate", gnutlsCode: rc)
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
            let alert = gnutls_alert_get(session)
            let name = alertName(alert)
            if usesPSK {
                if role == .client {
                    return TLSError(.psk, "the server rejected PSK identity '\(pskUsername ?? "?")' or its key (TLS alert: \(name))", gnutlsCode: rc)
                }
                return TLSError(.psk, "the client aborted the PSK handshake (TLS alert: \(name))", gnutlsCode: rc)
            }
            if role == .client && isCertificateAlert(alert) {
                let what = haveClientCertificate ? "the server rejected our client certificate"
                                                 : "the server requires a client certificate and none is configured (client-cert.pem, client-key.pem)"
                return TLSError(.rejectedByPeer, "\(what) (TLS alert: \(name))", gnutlsCode: rc)
            }
            if role == .server && isCertificateAlert(alert) {
                return TLSError(.rejectedByPeer, "the client rejected the server certificate (TLS alert: \(name))", gnutlsCode: rc)
            }
            return TLSError(.rejectedByPeer, "the \(peer) aborted the TLS handshake (TLS alert: \(name))", gnutlsCode: rc)
        case GNUTLS_E_PREMATURE_TERMINATION, GNUTLS_E_PULL_ERROR, GNUTLS_E_PUSH_ERROR:
            if usesPSK && role == .client {
                // Some servers (nbdkit) drop a PSK client they cannot authenticate without an alert.
                return TLSError(.psk, "the server closed the connection during the TLS handshake: it does not know PSK identity '\(pskUsername ?? "?")' or has a different key for it", gnutlsCode: rc)
            }
            return TLSError(.handshake, "the \(peer) closed the connection during the TLS handshake", gnutlsCode: rc)
        case GNUTLS_E_UNEXPECTED_PACKET_LENGTH, GNUTLS_E_UNSUPPORTED_VERSION_PACKET, GNUTLS_E_UNEXPECTED_PACKET, GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET:
            return TLSError(.handshake, "the \(peer) did not speak TLS (plaintext after STARTTLS, or a broken peer): \(gnutlsDescription(rc))", gnutlsCode: rc)
        case GNUTLS_E_NO_CIPHER_SUITES, GNUTLS_E_INSUFFICIENT_CREDENTIALS, GNUTLS_E_UNKNOWN_CIPHER_SUITE, GNUTLS_E_NO_COMMON_KEY_SHARE:
            return TLSError(.handshake, "no TLS cipher suite or credential type in common with the \(peer) (are both sides using the same kind of credentials, x509 or PSK?): \(gnutlsDescription(rc))", gnutlsCode: rc)
        default:
            return TLSError(.handshake, "TLS handshake with the \(peer) failed: \(gnutlsDescription(rc))", gnutlsCode: rc)
        }
    }

    static func isCertificateAlert(_ alert: gnutls_alert_description_t) -> Bool {
        [GNUTLS_A_BAD_CERTIFICATE, GNUTLS_A_UNSUPPORTED_CERTIFICATE, GNUTLS_A_CERTIFICATE_REVOKED, GNUTLS_A_CERTIFICATE_EXPIRED,
         GNUTLS_A_CERTIFICATE_UNKNOWN, GNUTLS_A_UNKNOWN_CA, GNUTLS_A_ACCESS_DENIED, GNUTLS_A_CERTIFICATE_REQUIRED].contains(alert)
    }

    static func formatSeconds(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}
