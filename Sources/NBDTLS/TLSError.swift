import CGnuTLS

/// Every TLS, credential and certificate failure in this module. The message says *why* in
/// plain words ("server certificate is not trusted: signed by an unknown CA"); the code lets
/// callers branch without parsing text. A struct, so new codes never break callers.
public struct TLSError: Error, Sendable, CustomStringConvertible, Equatable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A credential file is missing, unreadable or malformed.
        public static let credentials = Code("credentials")
        /// The peer's certificate failed verification (chain, dates, revocation, hostname).
        public static let untrustedPeer = Code("untrusted peer")
        /// The peer presented no certificate although one is required.
        public static let missingPeerCertificate = Code("missing peer certificate")
        /// The peer is authenticated but not on the authorization list.
        public static let notAuthorized = Code("not authorized")
        /// PSK identity unknown or key wrong.
        public static let psk = Code("PSK")
        /// The peer rejected us (alert or close right after the handshake).
        public static let rejectedByPeer = Code("rejected by peer")
        /// The handshake did not finish in time.
        public static let timedOut = Code("timed out")
        /// Any other handshake or record-layer failure.
        public static let handshake = Code("handshake")
        public static let io = Code("I/O")
        /// Key or certificate generation, parsing or export.
        public static let x509 = Code("X.509")
        public static let invalidArgument = Code("invalid argument")
    }

    public var code: Code
    public var message: String
    /// The GnuTLS error code behind this error, when there is one.
    public var gnutlsCode: Int32?
    /// Why a server-side handshake refused the peer, when it is one of the named reasons.
    public var refusalReason: TLSRefusalReason?

    public init(_ code: Code, _ message: String, gnutlsCode: Int32? = nil, refusalReason: TLSRefusalReason? = nil) {
        self.code = code
        self.message = message
        self.gnutlsCode = gnutlsCode
        self.refusalReason = refusalReason
    }

    public var description: String { message }
}

/// GnuTLS's own one-line text for an error code.
func gnutlsDescription(_ rc: Int32) -> String {
    guard let text = gnutls_strerror(rc) else { return "GnuTLS error \(rc)" }
    return String(cString: text)
}

/// Throws a `TLSError` with `what` and GnuTLS's explanation when `rc` is negative.
@discardableResult
func gnutlsCheck(_ rc: Int32, _ code: TLSError.Code, _ what: @autoclosure () -> String) throws -> Int32 {
    if rc < 0 { throw TLSError(code, "\(what()): \(gnutlsDescription(rc))", gnutlsCode: rc) }
    return rc
}
