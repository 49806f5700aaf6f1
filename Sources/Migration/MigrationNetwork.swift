#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Small socket helpers for picking ports and waiting for listeners.
enum MigrationNetwork {
    /// A port the kernel reports free on `host` right now (bind to port 0, read it, close).
    static func freePort(host: String) throws -> Int {
        try withAddress(host: host, port: 0) { address, length in
            let fd = socket(Int32(address.pointee.sa_family), Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw posixError("socket") }
            defer { close(fd) }
            guard bind(fd, address, length) == 0 else { throw posixError("bind \(host)") }
            var storage = sockaddr_storage()
            var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let ok = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) == 0 }
            }
            guard ok else { throw posixError("getsockname") }
            let family = storage.ss_family
            return withUnsafePointer(to: &storage) { pointer -> Int in
                if family == sa_family_t(AF_INET6) {
                    return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
                }
                return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
        }
    }

    /// Whether a TCP connection to host:port succeeds now.
    static func canConnect(host: String, port: Int) -> Bool {
        (try? withAddress(host: host, port: port) { address, length -> Bool in
            let fd = socket(Int32(address.pointee.sa_family), Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return false }
            defer { close(fd) }
            return connect(fd, address, length) == 0
        }) ?? false
    }

    private static func withAddress<T>(host: String, port: Int,
                                       _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let info = result else {
            throw MigrationError(.invalidPlan, "cannot resolve \(host): \(String(cString: gai_strerror(status)))", phase: .preflight)
        }
        defer { freeaddrinfo(result) }
        return try body(info.pointee.ai_addr, info.pointee.ai_addrlen)
    }

    private static func posixError(_ what: String) -> MigrationError {
        MigrationError(.exportFailed, "\(what): \(String(cString: strerror(errno)))", phase: .exporting)
    }
}
