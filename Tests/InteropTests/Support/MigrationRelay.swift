import Foundation

/// A TCP relay on 127.0.0.1 for the migration stream, which a test can cut: `cut()` shuts
/// down every connection it carries (both QEMUs see the stream break, as with a network
/// failure) and keeps listening, so a reconnect through it works. Threads, not processes;
/// every socket is closed by `stop()`.
final class MigrationRelay: @unchecked Sendable {
    let port: Int
    let targetPort: Int
    private let listener: Int32
    private let lock = NSLock()
    private var sockets: Set<Int32> = []
    private var stopped = false
    private var connectionCount = 0
    private var bytes: Int64 = 0

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MigrationTestFailure("relay: socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard bound else { close(fd); throw MigrationTestFailure("relay: bind/listen failed: errno \(errno)") }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    /// Connections accepted so far, and bytes carried (both directions).
    var stats: (connections: Int, bytes: Int64) { lock.withLock { (connectionCount, bytes) } }

    /// Breaks every current connection; new ones are still accepted.
    func cut() {
        lock.withLock {
            for fd in sockets { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    func stop() {
        let alreadyStopped = lock.withLock { () -> Bool in
            defer { stopped = true }
            return stopped
        }
        guard !alreadyStopped else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        cut()
    }

    deinit { stop() }

    private static func loopback(port: Int) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return addr
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = Self.loopback(port: targetPort)
            let connected = upstream >= 0 && withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard connected else {
                close(client)
                if upstream >= 0 { close(upstream) }
                continue
            }
            let accepted = lock.withLock { () -> Bool in
                guard !stopped else { return false }
                sockets.formUnion([client, upstream])
                connectionCount += 1
                return true
            }
            guard accepted else { close(client); close(upstream); return }
            let pair = PumpPair()
            Thread { [self] in pump(from: client, to: upstream, pair: pair) }.start()
            Thread { [self] in pump(from: upstream, to: client, pair: pair) }.start()
        }
    }

    /// Closes both sockets once both directions have ended.
    private final class PumpPair: @unchecked Sendable {
        let lock = NSLock()
        var ended = 0
        func end() -> Bool { lock.withLock { ended += 1; return ended == 2 } }
    }

    private func pump(from source: Int32, to destination: Int32, pair: PumpPair) {
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        outer: while true {
            let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { send(destination, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { break outer }
                offset += written
            }
            lock.withLock { bytes += Int64(count) }
        }
        // One direction ended: end the other too, as a broken network would.
        shutdown(source, Int32(SHUT_RDWR))
        shutdown(destination, Int32(SHUT_RDWR))
        if pair.end() {
            lock.withLock {
                sockets.remove(source)
                sockets.remove(destination)
            }
            close(source)
            close(destination)
        }
    }
}
