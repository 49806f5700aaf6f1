#if canImport(Glibc)
import Glibc
#endif
import CGnuTLS

/// A TLS session bound to a connected socket's descriptor: the `ByteStream` the NBD engines
/// speak over after STARTTLS. One reader thread and one writer thread may use it at once
/// (GnuTLS allows exactly that); writers serialise on a lock.
public final class TLSSession: ByteStream, @unchecked Sendable {
    public enum Role: Sendable { case server, client }

    let handle: GnuTLSSessionHandle
    let socket: SocketStream
    let role: Role
    let context: TLSSessionContext
    /// Credentials the session points into; they must outlive it.
    private let credentials: [AnyObject]
    /// `gnutls_session_set_verify_cert` keeps this pointer for the session's life.
    private let verifyHostname: UnsafeMutablePointer<CChar>?
    private let writeLock = PThreadMutex()
    private let stateLock = PThreadMutex()
    private var closed = false
    /// Client side: until the first record arrives, an EOF or alert means the server
    /// refused us (TLS 1.3 reports a rejected client certificate only here).
    private var firstReadNote: String?

    /// Who the peer proved to be: the certificate subject DN, or the PSK identity.
    public internal(set) var peerIdentity: String?
    /// The peer's certificate subject, when it presented one.
    public internal(set) var peerDistinguishedName: DistinguishedName?

    init(handle: GnuTLSSessionHandle, socket: SocketStream, role: Role, context: TLSSessionContext,
         credentials: [AnyObject], verifyHostname: String?) {
        self.handle = handle
        self.socket = socket
        self.role = role
        self.context = context
        self.credentials = credentials
        self.verifyHostname = verifyHostname.map { strdup($0) }
        gnutls_session_set_ptr(handle.raw, Unmanaged.passUnretained(context).toOpaque())
        swiftnbd_gnutls_transport_set_fd(handle.raw, socket.fd)
        if let name = self.verifyHostname {
            gnutls_session_set_verify_cert(handle.raw, name, 0)
        }
    }

    deinit {
        close()
        gnutls_session_set_ptr(handle.raw, nil)
        free(verifyHostname)
    }

    // MARK: Handshake

    /// Runs the handshake; on failure sends an alert, closes the socket and throws a
    /// `TLSError` explaining why.
    func handshake(timeout: Double, describeFailure: (Int32) -> TLSError) throws {
        let milliseconds = UInt32(max(1, min(timeout * 1000, 3_600_000)))
        gnutls_handshake_set_timeout(handle.raw, milliseconds)
        var attempts = 0
        while true {
            let rc = gnutls_handshake(handle.raw)
            if rc == GNUTLS_E_SUCCESS { break }
            attempts += 1
            if gnutls_error_is_fatal(rc) == 0 && attempts < 1000 { continue }
            let error = describeFailure(rc)
            // A blocking peer would otherwise wait for the next handshake message forever.
            _ = gnutls_alert_send_appropriate(handle.raw, rc)
            markClosed()
            socket.close()
            throw error
        }
        // The handshake timeout must not linger into the data phase.
        gnutls_handshake_set_timeout(handle.raw, swiftnbd_gnutls_indefinite_timeout())
    }

    /// Client side: treat an EOF or alert on the first read as the server refusing us.
    func expectRejectionOnFirstRead(_ note: String) {
        stateLock.withLock { firstReadNote = note }
        hasPendingNote = true
    }

    /// Reader-thread fast path: skip the lock once the note is gone.
    private var hasPendingNote = false

    private func takeNote() -> String? {
        guard hasPendingNote else { return nil }
        hasPendingNote = false
        return stateLock.withLock { let note = firstReadNote; firstReadNote = nil; return note }
    }

    /// TLS version and cipher, e.g. "TLS1.3 / AES-256-GCM".
    public var connectionSummary: String {
        let version = gnutls_protocol_get_name(gnutls_protocol_get_version(handle.raw)).map { String(cString: $0) } ?? "?"
        let cipher = gnutls_cipher_get_name(gnutls_cipher_get(handle.raw)).map { String(cString: $0) } ?? "?"
        return "\(version) / \(cipher)"
    }

    // MARK: ByteStream

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        var attempts = 0
        while true {
            let n = gnutls_record_recv(handle.raw, buffer.baseAddress, buffer.count)
            if n > 0 {
                if hasPendingNote { stateLock.withLock { firstReadNote = nil }; hasPendingNote = false }
                return n
            }
            let rc = Int32(truncatingIfNeeded: n)
            if n == 0 || rc == GNUTLS_E_PREMATURE_TERMINATION {
                if let note = takeNote() {
                    throw TLSError(.rejectedByPeer, "\(note) (the connection was closed right after the TLS handshake)")
                }
                return 0
            }
            // Our sockets block, so AGAIN means SO_RCVTIMEO expired (the client's handshake
            // timeout): retrying would multiply the timeout, not wait for data.
            if rc == GNUTLS_E_AGAIN { throw StreamError(.timedOut, "TLS read timed out") }
            attempts += 1
            if (rc == GNUTLS_E_INTERRUPTED || rc == GNUTLS_E_REHANDSHAKE) && attempts < 10_000 { continue }
            if rc == GNUTLS_E_FATAL_ALERT_RECEIVED {
                let alert = alertName(gnutls_alert_get(handle.raw))
                if let note = takeNote() {
                    throw TLSError(.rejectedByPeer, "\(note) (TLS alert: \(alert))", gnutlsCode: rc)
                }
                throw TLSError(.rejectedByPeer, "the peer ended the TLS session with an alert: \(alert)", gnutlsCode: rc)
            }
            if isClosed { return 0 }
            if rc == GNUTLS_E_PULL_ERROR, let note = takeNote() {
                // A reset instead of an orderly close: the server dropped us unread.
                throw TLSError(.rejectedByPeer, "\(note) (the connection was reset right after the TLS handshake)", gnutlsCode: rc)
            }
            throw TLSError(.io, "TLS receive failed: \(gnutlsDescription(rc))", gnutlsCode: rc)
        }
    }

    public func write(_ parts: [UnsafeRawBufferPointer]) throws {
        try writeLock.withLock {
            guard !isClosed else { throw StreamError(.endOfStream, "TLS session is closed") }
            let nonEmpty = parts.filter { $0.count > 0 }
            // Small leading parts (a reply header) are corked together with the start of the
            // next part so they share one full record instead of leaving as a tiny record and
            // packet of their own. Corking stops once a record is full: GnuTLS copies corked
            // data, and a 32 MiB payload should be encrypted straight from the caller's buffer.
            var corked = nonEmpty.count > 1
            var buffered = 0
            // A batch of small replies (many headers and 4 KiB blocks) is corked whole, so it
            // leaves as full records instead of one tiny record per header.
            var total = 0
            for part in nonEmpty { total += part.count }
            let corkLimit = total <= Self.wholeCorkLimit ? total : Self.recordSize
            if corked { gnutls_record_cork(handle.raw) }
            for part in nonEmpty {
                var offset = 0
                if corked {
                    let take = min(part.count, max(0, corkLimit - buffered))
                    try sendAll(part, from: 0, to: take, corked: true)
                    buffered += take
                    offset = take
                    if offset < part.count || buffered >= corkLimit {
                        try uncork()
                        corked = false
                    }
                }
                try sendAll(part, from: offset, to: part.count, corked: false)
            }
            if corked { try uncork() }
        }
    }

    /// The largest TLS record payload.
    private static let recordSize = 16384
    /// Writes up to this size are corked whole (GnuTLS copies corked bytes once).
    private static let wholeCorkLimit = 256 << 10

    private func sendAll(_ part: UnsafeRawBufferPointer, from start: Int, to end: Int, corked: Bool) throws {
        var offset = start
        var attempts = 0
        while offset < end {
            // record_send takes at most one record per call: loop.
            let n = gnutls_record_send(handle.raw, part.baseAddress! + offset, end - offset)
            if n > 0 { offset += n; continue }
            let rc = Int32(truncatingIfNeeded: n)
            attempts += 1
            if rc == GNUTLS_E_INTERRUPTED && attempts < 10_000 { continue }
            if corked { _ = gnutls_record_uncork(handle.raw, 0) }
            // AGAIN on a blocking socket: SO_SNDTIMEO expired, the peer stopped reading.
            if rc == GNUTLS_E_AGAIN { throw StreamError(.timedOut, "TLS send timed out") }
            throw sendFailure(rc)
        }
    }

    private func uncork() throws {
        var attempts = 0
        while true {
            let rc = gnutls_record_uncork(handle.raw, UInt32(GNUTLS_RECORD_WAIT))
            if rc >= 0 { return }
            attempts += 1
            if rc == GNUTLS_E_INTERRUPTED && attempts < 10_000 { continue }
            if rc == GNUTLS_E_AGAIN { throw StreamError(.timedOut, "TLS send timed out") }
            throw sendFailure(rc)
        }
    }

    /// A send that fails before anything was received since the handshake is the server
    /// dropping us (it refused our certificate), not a transport accident.
    private func sendFailure(_ rc: Int32) -> TLSError {
        if let note = stateLock.withLock({ () -> String? in let n = firstReadNote; firstReadNote = nil; return n }) {
            return TLSError(.rejectedByPeer, "\(note) (the connection was closed right after the TLS handshake)", gnutlsCode: rc)
        }
        return TLSError(.io, "TLS send failed: \(gnutlsDescription(rc))", gnutlsCode: rc)
    }

    /// Sends close_notify (unless a writer is stuck mid-send) and closes the socket.
    public func close() {
        guard markClosed() else { return }
        // If the socket was closed under us its descriptor number may already be reused by
        // another connection: never write a close_notify into it.
        if !socket.isClosed, writeLock.tryLock() {
            // Bound the goodbye: a peer that stopped reading must not hang us here.
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(socket.fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = gnutls_bye(handle.raw, GNUTLS_SHUT_WR)
            writeLock.unlock()
        }
        socket.close()
    }

    private var isClosed: Bool { stateLock.withLock { closed } }

    /// Returns true for the caller that closed it.
    @discardableResult
    private func markClosed() -> Bool {
        stateLock.withLock {
            if closed { return false }
            closed = true
            return true
        }
    }
}

func alertName(_ alert: gnutls_alert_description_t) -> String {
    gnutls_alert_get_name(alert).map { String(cString: $0) } ?? "alert \(alert.rawValue)"
}

/// A pthread mutex with try-lock, for the session's writer.
final class PThreadMutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
    func tryLock() -> Bool { pthread_mutex_trylock(&mutex) == 0 }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
