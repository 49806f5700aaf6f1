#if canImport(Glibc)
import Glibc
#endif
import NBDTLS

/// Opens the plaintext socket an NBD URI names: TCP over IPv4 or IPv6, or a Unix socket.
enum SocketConnector {
    static func connect(_ transport: NBDURI.Transport) throws -> SocketStream {
        switch transport {
        case let .tcp(host, port): try connectTCP(host: host, port: port)
        case let .unix(path): try connectUnix(path: path)
        }
    }

    static func connectTCP(host: String, port: UInt16) throws -> SocketStream {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw NBDClientError(.connectionFailed, "cannot resolve '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError: Int32 = 0
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            if fd < 0 { lastError = errno; continue }
            if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 {
                var one: Int32 = 1
                // Requests are small and latency-bound: never let Nagle hold them (docs/architecture.md §3.5).
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return SocketStream(fd: fd)
            }
            lastError = errno
            close(fd)
        }
        throw NBDClientError(.connectionFailed, "cannot connect to \(host.contains(":") ? "[\(host)]" : host):\(port): \(String(cString: strerror(lastError)))")
    }

    static func connectUnix(path: String) throws -> SocketStream {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A leading NUL names a Linux abstract socket; its length is exact, not NUL-terminated.
        let abstract = bytes.first == 0
        guard bytes.count < capacity || (abstract && bytes.count <= capacity) else {
            throw NBDClientError(.connectionFailed, "socket path is longer than \(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length = abstract
            ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
            : socklen_t(MemoryLayout<sockaddr_un>.size)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NBDClientError(.connectionFailed, "socket(): \(String(cString: strerror(errno)))") }
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) == 0 }
        }
        guard ok else {
            let e = errno
            close(fd)
            throw NBDClientError(.connectionFailed, "cannot connect to Unix socket \(path): \(String(cString: strerror(e)))")
        }
        return SocketStream(fd: fd)
    }
}
