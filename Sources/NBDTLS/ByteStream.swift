#if canImport(Glibc)
import Glibc
#endif

/// A bidirectional byte stream the NBD engines speak over: a plaintext socket, or a TLS
/// session bound to that socket after STARTTLS. One reader thread and one writer thread may
/// use a stream at the same time (GnuTLS allows exactly that); writers serialise themselves.
public protocol ByteStream: AnyObject, Sendable {
    /// Reads up to `buffer.count` bytes; returns 0 at end of stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Sends all parts as one unit (one `writev`, or one corked TLS flush), so a reply's
    /// header and payload never leave in separate packets.
    func write(_ parts: [UnsafeRawBufferPointer]) throws
    /// Orderly close (TLS close_notify first, when there is TLS). Idempotent.
    func close()
}

extension ByteStream {
    /// Reads exactly `buffer.count` bytes, or throws `StreamError.endOfStream`.
    public func readExactly(into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { throw StreamError(.endOfStream, "connection closed after \(done) of \(buffer.count) bytes") }
            done += n
        }
    }

    public func readExactly(count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try readExactly(into: $0) }
        return bytes
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write([$0]) }
    }
}

/// Errors of the byte-stream layer (sockets and TLS records).
public struct StreamError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable {
        let name: String
        public static let endOfStream = Code(name: "end of stream")
        public static let system = Code(name: "system error")
        public static let timedOut = Code(name: "timed out")
        public static let tls = Code(name: "TLS error")
    }
    public var code: Code
    public var message: String
    public var errno: Int32?
    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }
    public var description: String { message }
}

/// A plaintext stream over a connected socket file descriptor. Owns the descriptor.
public final class SocketStream: ByteStream, @unchecked Sendable {
    public let fd: Int32
    private var closed = false
    private let closeLock = NSLockLite()

    public init(fd: Int32) { self.fd = fd }
    deinit { close() }

    /// True once `close()` ran: the descriptor number may already belong to someone else.
    public var isClosed: Bool { closeLock.withLock { closed } }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { throw StreamError(.timedOut, "read timed out", errno: e) }
            throw StreamError(.system, "recv failed: \(String(cString: strerror(e)))", errno: e)
        }
    }

    public func write(_ parts: [UnsafeRawBufferPointer]) throws {
        var iov = parts.filter { $0.count > 0 }.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var index = 0
        while index < iov.count {
            var msg = msghdr()
            let sent: Int = iov.withUnsafeMutableBufferPointer { vectors in
                msg.msg_iov = vectors.baseAddress! + index
                msg.msg_iovlen = min(vectors.count - index, 1024)
                // MSG_NOSIGNAL: a peer that vanishes mid-reply must not kill the process (CVE-2017-10664).
                return Glibc.sendmsg(fd, &msg, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                let e = errno
                if e == EINTR { continue }
                throw StreamError(.system, "send failed: \(String(cString: strerror(e)))", errno: e)
            }
            var remaining = sent
            while remaining > 0 && index < iov.count {
                if remaining >= iov[index].iov_len {
                    remaining -= iov[index].iov_len
                    index += 1
                } else {
                    iov[index].iov_base += remaining
                    iov[index].iov_len -= remaining
                    remaining = 0
                }
            }
        }
    }

    public func close() {
        closeLock.withLock {
            guard !closed else { return }
            closed = true
            _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
            _ = Glibc.close(fd)
        }
    }
}

/// A minimal mutex so this module needs no Foundation.
final class NSLockLite: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }
}
