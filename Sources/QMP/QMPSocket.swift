#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns the file descriptor of a QMP connection. `shutdown()` wakes a reader blocked in
/// `read`; the descriptor itself is closed only in `deinit`, so no thread can ever use a
/// number that was closed and reused.
final class QMPSocket: @unchecked Sendable {
    let fd: Int32

    init(adopting fd: Int32) {
        self.fd = fd
    }

    /// Connects to a Unix stream socket such as QEMU's `-qmp unix:PATH,server=on,wait=off`.
    static func connect(unixPath path: String) throws -> QMPSocket {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else {
            throw QMPError(.connectionFailed, "socket path longer than \(capacity - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes + [0])
        }
        #if canImport(Glibc)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_UNIX, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw QMPError(.connectionFailed, "socket(): \(String(cString: strerror(errno)))") }
        let socket = QMPSocket(adopting: fd)
        let status = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0 else {
            throw QMPError(.connectionFailed, "\(path): \(String(cString: strerror(errno)))")
        }
        return socket
    }

    /// Reads what is available; 0 means the peer closed.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            throw QMPError(.ioFailed, "read: \(String(cString: strerror(errno)))")
        }
    }

    func writeAll(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw QMPError(.ioFailed, "write: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    func shutdown() {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }

    deinit {
        Glibc.close(fd)
    }
}
