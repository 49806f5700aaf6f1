import Foundation

/// One listening socket descriptor, owned: closed (and a Unix socket file removed) in `close()`
/// or `deinit`.
final class ListeningSocket: @unchecked Sendable {
    let fd: Int32
    /// What the socket is bound to, e.g. `127.0.0.1:10809`, `[::1]:10809`, `unix:/run/x.sock`.
    let boundDescription: String
    /// The bound TCP port, if any.
    let port: UInt16?
    private let unixPath: String?
    private var closed = false
    private let lock = NSLock()

    private init(fd: Int32, boundDescription: String, port: UInt16?, unixPath: String?) {
        self.fd = fd
        self.boundDescription = boundDescription
        self.port = port
        self.unixPath = unixPath
    }

    deinit { close() }

    func close() {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
        if let unixPath { unlink(unixPath) }
    }

    /// Binds every socket an address stands for.
    static func open(_ address: ListenAddress, backlog: Int32 = 128) throws -> [ListeningSocket] {
        switch address {
        case let .tcp(host, port): return try openTCP(host: host, port: port, backlog: backlog)
        case let .unix(path): return [try openUnix(path: path, backlog: backlog)]
        case let .inherited(fd): return [try adopt(fd: fd)]
        }
    }

    private static func openTCP(host: String?, port: UInt16, backlog: Int32) throws -> [ListeningSocket] {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw ServerError(.cannotListen, "cannot resolve bind address \(host ?? "*"): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var sockets: [ListeningSocket] = []
        var chosenPort = port
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let info = entry {
            entry = info.pointee.ai_next
            let family = info.pointee.ai_family
            guard family == AF_INET || family == AF_INET6 else { continue }
            let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            if fd < 0 {
                // A host without IPv6 support: skip that family when others remain.
                if errno == EAFNOSUPPORT { continue }
                throw ServerError(.cannotListen, "socket: \(String(cString: strerror(errno)))", errno: errno)
            }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if family == AF_INET6 {
                // Separate IPv4 and IPv6 sockets for the wildcard address.
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            // With port 0, later families reuse the port the first one got.
            var storage = sockaddr_storage()
            let length = Int(info.pointee.ai_addrlen)
            withUnsafeMutableBytes(of: &storage) { raw in
                raw.copyMemory(from: UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: length))
            }
            setPort(&storage, chosenPort)
            let bound = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
            }
            if bound != 0 {
                let e = errno
                Glibc.close(fd)
                if e == EADDRNOTAVAIL && family == AF_INET6 && sockets.count > 0 { continue }
                let text = "\(describe(&storage)): \(String(cString: strerror(e)))"
                throw ServerError(e == EADDRINUSE ? .addressInUse : .cannotListen,
                                  e == EADDRINUSE ? "cannot listen on \(text) (is another server running?)" : "cannot bind \(text)",
                                  errno: e)
            }
            if listen(fd, backlog) != 0 {
                let e = errno
                Glibc.close(fd)
                throw ServerError(e == EADDRINUSE ? .addressInUse : .cannotListen, "listen: \(String(cString: strerror(e)))", errno: e)
            }
            var actual = sockaddr_storage()
            var actualLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &actual) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) }
            }
            chosenPort = portOf(&actual)
            sockets.append(ListeningSocket(fd: fd, boundDescription: describe(&actual), port: chosenPort, unixPath: nil))
        }
        if sockets.isEmpty { throw ServerError(.cannotListen, "no usable address for \(host ?? "*")") }
        return sockets
    }

    private static func openUnix(path: String, backlog: Int32) throws -> ListeningSocket {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw ServerError(.badConfiguration, "Unix socket path must be 1 to \(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes + [0]) }
        // A socket file left behind by a dead server is replaced; a live one is not.
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw ServerError(.addressInUse, "\(path) exists and is not a socket")
            }
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            let live = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
            }
            Glibc.close(probe)
            if live { throw ServerError(.addressInUse, "another server is listening on \(path)") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ServerError(.cannotListen, "socket: \(String(cString: strerror(errno)))", errno: errno) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if bound != 0 || listen(fd, backlog) != 0 {
            let e = errno
            Glibc.close(fd)
            throw ServerError(e == EADDRINUSE ? .addressInUse : .cannotListen, "cannot listen on \(path): \(String(cString: strerror(e)))", errno: e)
        }
        return ListeningSocket(fd: fd, boundDescription: "unix:\(path)", port: nil, unixPath: path)
    }

    private static func adopt(fd: Int32) throws -> ListeningSocket {
        var type: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0, type == Int32(SOCK_STREAM.rawValue) else {
            throw ServerError(.socketActivation, "inherited fd \(fd) is not a stream socket")
        }
        var accepting: Int32 = 0
        length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting == 0 {
            throw ServerError(.socketActivation, "inherited fd \(fd) is not listening")
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var address = sockaddr_storage()
        var addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &addressLength) }
        }
        let family = Int32(address.ss_family)
        let port: UInt16? = family == AF_INET || family == AF_INET6 ? portOf(&address) : nil
        return ListeningSocket(fd: fd, boundDescription: "\(describe(&address)) (fd \(fd))", port: port, unixPath: nil)
    }

    // MARK: sockaddr helpers

    static func portOf(_ storage: inout sockaddr_storage) -> UInt16 {
        let family = Int32(storage.ss_family)
        return withUnsafePointer(to: &storage) { pointer in
            switch family {
            case AF_INET: pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            case AF_INET6: pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            default: 0
            }
        }
    }

    private static func setPort(_ storage: inout sockaddr_storage, _ port: UInt16) {
        withUnsafeMutablePointer(to: &storage) { pointer in
            switch Int32(pointer.pointee.ss_family) {
            case AF_INET: pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = port.bigEndian }
            case AF_INET6: pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = port.bigEndian }
            default: break
            }
        }
    }

    /// `1.2.3.4:80`, `[::1]:80`, `unix:/path` or `unix` for an unnamed peer.
    static func describe(_ storage: inout sockaddr_storage) -> String {
        withUnsafePointer(to: &storage) { pointer -> String in
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            switch Int32(pointer.pointee.ss_family) {
            case AF_INET:
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { address in
                    var ip = address.pointee.sin_addr
                    inet_ntop(AF_INET, &ip, &text, socklen_t(text.count))
                    return "\(String(cString: text)):\(UInt16(bigEndian: address.pointee.sin_port))"
                }
            case AF_INET6:
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { address in
                    var ip = address.pointee.sin6_addr
                    inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count))
                    return "[\(String(cString: text))]:\(UInt16(bigEndian: address.pointee.sin6_port))"
                }
            case AF_UNIX:
                return pointer.withMemoryRebound(to: sockaddr_un.self, capacity: 1) { address in
                    let path = withUnsafeBytes(of: address.pointee.sun_path) { raw in
                        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                    }
                    return path.isEmpty ? "unix" : "unix:\(path)"
                }
            default:
                return "unknown address family \(pointer.pointee.ss_family)"
            }
        }
    }
}
