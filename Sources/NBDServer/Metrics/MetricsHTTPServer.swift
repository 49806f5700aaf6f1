import Foundation
import Logging

/// A minimal HTTP/1.1 endpoint for Prometheus scrapes (`swiftnbd serve --metrics`): answers
/// `GET /metrics` and `HEAD /metrics` with what `render` returns, 404 for any other path, 405
/// for other methods, and closes every connection after one response.
///
/// It shares nothing with the NBD engine but the bytes `render` produces: its own listener,
/// accept thread and one short-lived thread per scrape, at most `Limits.maxConcurrent` at once,
/// each bounded by a header size limit and deadlines for reading the request and sending the
/// response. Beyond the limit as many again are answered 503 (after at most a second of
/// reading, so the close does not reset the answer away), and beyond that connections are
/// closed at once. A slow or hostile scraper can therefore hold a few threads for a few
/// seconds, never an NBD thread, and there is no path from here to an export.
public final class MetricsHTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Largest request head (request line and header fields) read; beyond it: 431.
        public var maxHeaderBytes: Int
        /// Seconds the whole request head may take to arrive; then 408.
        public var readTimeout: Double
        /// Seconds the response may take to leave.
        public var writeTimeout: Double
        /// Scrapes served at once; more are refused with 503.
        public var maxConcurrent: Int

        public init(maxHeaderBytes: Int = 8 << 10, readTimeout: Double = 5, writeTimeout: Double = 10, maxConcurrent: Int = 4) {
            self.maxHeaderBytes = max(64, maxHeaderBytes)
            self.readTimeout = readTimeout
            self.writeTimeout = writeTimeout
            self.maxConcurrent = max(1, maxConcurrent)
        }
    }

    public let address: ListenAddress
    public let limits: Limits
    private let render: @Sendable () -> [UInt8]
    private let logger: Logger
    private let lock = NSLock()
    private var listeners: [ListeningSocket] = []
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private var active = 0
    private var refusing = 0
    private var acceptorDone = false
    private let stopped = NSCondition()

    /// - Parameter render: the response body of a scrape (the Prometheus text exposition);
    ///   called on the scrape's thread, possibly on several at once.
    public init(address: ListenAddress, limits: Limits = Limits(), logger: Logger, render: @escaping @Sendable () -> [UInt8]) {
        self.address = address
        self.limits = limits
        self.logger = logger
        self.render = render
    }

    deinit {
        if wakeRead >= 0 { close(wakeRead) }
        if wakeWrite >= 0 { close(wakeWrite) }
    }

    /// What the listeners are bound to, e.g. `["127.0.0.1:9100"]`.
    public var boundAddresses: [String] { lock.withLock { listeners.map(\.boundDescription) } }

    /// TCP ports actually bound (useful with port 0).
    public var boundPorts: [UInt16] { lock.withLock { listeners.compactMap(\.port) } }

    /// Binds (throws when the address is unusable, e.g. in use) and starts accepting.
    public func start() throws {
        SignalWatcher.ignoreSIGPIPE()
        let opened = try ListeningSocket.open(address, backlog: 16)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            opened.forEach { $0.close() }
            throw ServerError(.cannotListen, "pipe: \(String(cString: strerror(errno)))", errno: errno)
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        lock.withLock {
            listeners = opened
            wakeRead = fds[0]
            wakeWrite = fds[1]
        }
        let wake = fds[0]
        let thread = Thread { [self] in acceptLoop(opened, wake: wake) }
        thread.name = "metrics-accept"
        thread.stackSize = 256 << 10
        thread.start()
    }

    /// Stops accepting and closes the listeners; scrapes in progress finish on their own.
    public func stop() {
        let wake = lock.withLock { wakeWrite }
        guard wake >= 0 else { return }
        var byte: UInt8 = 1
        _ = write(wake, &byte, 1)
        stopped.lock()
        while !acceptorDone { stopped.wait() }
        stopped.unlock()
        lock.withLock { listeners }.forEach { $0.close() }
    }

    private func acceptLoop(_ sockets: [ListeningSocket], wake: Int32) {
        defer {
            stopped.lock()
            acceptorDone = true
            stopped.broadcast()
            stopped.unlock()
        }
        var pollSet = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        pollSet.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
        while true {
            let ready = poll(&pollSet, nfds_t(pollSet.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("metrics endpoint: poll failed: \(String(cString: strerror(errno)))")
                return
            }
            if pollSet[pollSet.count - 1].revents != 0 { return }
            for index in sockets.indices where pollSet[index].revents != 0 {
                pollSet[index].revents = 0
                acceptOne(sockets[index])
            }
        }
    }

    private func acceptOne(_ listener: ListeningSocket) {
        let fd = accept(listener.fd, nil, nil)
        if fd < 0 {
            if errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM {
                // Out of descriptors: back off instead of spinning on a ready listener.
                usleep(100_000)
            }
            return
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let busy = lock.withLock { () -> Bool? in
            if active < limits.maxConcurrent {
                active += 1
                return false
            }
            guard refusing < limits.maxConcurrent else { return nil }
            refusing += 1
            return true
        }
        guard let busy else {
            close(fd)  // a flood: nothing more is spent on it
            return
        }
        let exchange = MetricsHTTPExchange(fd: fd, limits: limits, busy: busy, render: render)
        let thread = Thread { [self] in
            exchange.run()
            lock.withLock {
                if busy { refusing -= 1 } else { active -= 1 }
            }
        }
        thread.name = "metrics-scrape"
        thread.stackSize = 256 << 10
        thread.start()
    }
}
