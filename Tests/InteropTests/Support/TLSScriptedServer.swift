import Foundation

/// A one-connection server on 127.0.0.1 that plays a downgrading man-in-the-middle: it sends
/// a scripted greeting/replies and records every byte the client sends, so tests can prove a
/// TLS-requiring client never names an export in plaintext.
final class TLSScriptedServer: @unchecked Sendable {
    enum Script {
        /// Newstyle greeting without FIXED_NEWSTYLE (STARTTLS impossible).
        case nonFixedNewstyle
        /// Oldstyle greeting (no options at all).
        case oldstyle
        /// Fixed newstyle, then an error reply (type) to the first option (STARTTLS).
        case refuseStartTLS(replyType: UInt32)
        /// Fixed newstyle, then close the connection on the first option.
        case closeOnStartTLS
    }

    let port: Int
    private let listenFD: Int32
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    private let finished = DispatchSemaphore(value: 0)

    init(_ script: Script) throws {
        port = FreePort.next()
        listenFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listenFD, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, listen(listenFD, 4) == 0 else { Glibc.close(listenFD); throw FixtureError("scripted server cannot listen") }
        let fd = listenFD
        Thread { [self] in
            defer { finished.signal() }
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollfd, 1, 30_000) == 1 else { return }
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { return }
            defer { Glibc.close(conn) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            play(script, on: conn)
        }.start()
    }

    deinit { Glibc.close(listenFD) }

    /// Everything the client sent, once it has closed (or after a bounded wait).
    func received() -> [UInt8] {
        // Wait once; hand the signal back so later calls return at once.
        if finished.wait(timeout: .now() + 30) == .success { finished.signal() }
        lock.lock(); defer { lock.unlock() }
        return bytes
    }

    /// Option numbers the client sent after its 4 flag bytes (fixed newstyle).
    func optionsSent() -> [UInt32] {
        let all = received()
        var options: [UInt32] = []
        var index = 4
        while index + 16 <= all.count {
            options.append(RawNBDClient.u32(all, index + 8))
            index += 16 + Int(RawNBDClient.u32(all, index + 12))
        }
        return options
    }

    private func play(_ script: Script, on fd: Int32) {
        switch script {
        case .nonFixedNewstyle:
            send(fd, RawNBDClient.be64(RawNBDClient.nbdMagic) + RawNBDClient.be64(RawNBDClient.ihaveopt) + [0, 0])
        case .oldstyle:
            send(fd, RawNBDClient.be64(RawNBDClient.nbdMagic) + RawNBDClient.be64(0x0000_4202_8186_1253) + RawNBDClient.be64(1 << 20)
                 + RawNBDClient.be32(1) + [UInt8](repeating: 0, count: 124))
        case let .refuseStartTLS(replyType):
            send(fd, RawNBDClient.be64(RawNBDClient.nbdMagic) + RawNBDClient.be64(RawNBDClient.ihaveopt) + [0, 3])
            guard readExactly(fd, 4 + 16) else { return }
            let message = Array("TLS disabled here".utf8)
            send(fd, RawNBDClient.be64(RawNBDClient.replyMagic) + RawNBDClient.be32(5) + RawNBDClient.be32(replyType)
                 + RawNBDClient.be32(UInt32(message.count)) + message)
        case .closeOnStartTLS:
            send(fd, RawNBDClient.be64(RawNBDClient.nbdMagic) + RawNBDClient.be64(RawNBDClient.ihaveopt) + [0, 3])
            _ = readExactly(fd, 4 + 16)
            return
        }
        // Record whatever else the client says until it closes.
        var buffer = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<1000 {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            append(Array(buffer[..<n]))
        }
    }

    private func readExactly(_ fd: Int32, _ count: Int) -> Bool {
        var got = 0
        var buffer = [UInt8](repeating: 0, count: count)
        while got < count {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { append(Array(buffer[..<got])); return false }
            got += n
        }
        append(buffer)
        return true
    }

    private func append(_ more: [UInt8]) {
        lock.lock(); bytes += more; lock.unlock()
    }

    private func send(_ fd: Int32, _ data: [UInt8]) {
        _ = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}
