import Foundation

/// Where a server under test listens, used to wait until it is ready.
enum Listener {
    case tcp(host: String, port: Int)
    case unix(path: String)
}

/// Free TCP ports on 127.0.0.1, handed out once each within a test run.
///
/// A port is free when handed out, but something else binds it only later (a server the test
/// starts, QEMU's migration listener). Ports are therefore taken from below the kernel's
/// ephemeral range: a port the kernel gave out for bind(0) could meanwhile be picked as the
/// source port of one of the many outgoing connections the suites make in parallel, and the
/// test's listener would then fail with "address in use".
enum FreePort {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var handedOut = Set<Int>()
    /// The 8,000 ports below the ephemeral range (20768–28767 with Linux's default 32768–60999).
    private static let candidates: Range<Int> = {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let ephemeralLow = text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
        let upper = max(ephemeralLow, 9024)
        return (upper - 8000)..<upper
    }()
    nonisolated(unsafe) private static var cursor = Int.random(in: 0..<8000)

    static func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        for _ in 0..<candidates.count {
            cursor = (cursor + 1) % candidates.count
            let port = candidates.lowerBound + cursor
            if !handedOut.contains(port) && canBind(port) {
                handedOut.insert(port)
                return port
            }
        }
        fatalError("no free port below the ephemeral range")
    }

    private static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// Tries once to connect to a listener.
func canConnect(_ listener: Listener) -> Bool {
    switch listener {
    case let .tcp(host, port):
        var hints = addrinfo(ai_flags: 0, ai_family: AF_UNSPEC, ai_socktype: Int32(SOCK_STREAM.rawValue),
                             ai_protocol: 0, ai_addrlen: 0, ai_addr: nil, ai_canonname: nil, ai_next: nil)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else { return false }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, 0)
        defer { close(fd) }
        return connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0
    case let .unix(path):
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes + [0])
        }
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}

/// A long-running server under test (swiftnbd, qemu-nbd, nbdkit …). Started and waited for
/// in `init`, stopped by PID in `stop()` or on release. Its output goes to a log file that
/// tests print when they fail.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let logPath: String
    let arguments: [String]

    /// - Parameters:
    ///   - arguments: the command, e.g. `[Peers.swiftnbd, "serve", …]` or `["qemu-nbd", …]`.
    ///   - listener: where to wait for the server to accept connections; `nil` waits for nothing.
    init(_ arguments: [String], listener: Listener?, environment: [String: String] = [:],
         readyTimeout: Double = 60) throws {
        self.arguments = arguments
        logPath = FileManager.default.temporaryDirectory.appendingPathComponent("server-\(UUID().uuidString.prefix(8)).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var env = ProcessLedger.environment()
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try spawn(process, closingAfterwards: [log])
        guard let listener else { return }
        let deadline = Date().addingTimeInterval(readyTimeout)
        while Date() < deadline {
            if canConnect(listener) { return }
            if !process.isRunning { break }
            usleep(20_000)
        }
        let why = process.isRunning ? "not listening after \(readyTimeout)s" : "exited with \(process.terminationStatus)"
        stop()
        throw ServerFailedToStart(command: arguments, reason: why, log: self.log)
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }
    var pid: Int32 { process.processIdentifier }

    /// SIGTERM, then SIGKILL after `grace` seconds. Returns the exit status.
    @discardableResult
    func stop(grace: Double = 15) -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(grace)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL at once (crash tests).
    func crash() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Waits for the process to exit by itself; returns its status or nil on timeout.
    func waitForExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit {
        if process.isRunning { stop(grace: 5) }
        try? FileManager.default.removeItem(atPath: logPath)
    }
}

struct ServerFailedToStart: Error, CustomStringConvertible {
    var command: [String]
    var reason: String
    var log: String
    var description: String { "\(command.joined(separator: " ")): \(reason)\n\(log)" }
}
