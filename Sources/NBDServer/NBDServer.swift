import BlockDevices
import CoreMetrics
import Foundation
import Logging
import NBDProtocol
import NBDTLS

/// The NBD server engine: listens, negotiates through `ServerNegotiationStateMachine`, and
/// serves requests from blocking threads (docs/architecture.md §3).
///
/// Lifecycle: `init` → `start()` (binds; throws on a busy port) → … → `shutdown()` (graceful:
/// stop accepting, answer requests already read, flush and close devices) →
/// `waitUntilStopped()` returns.
public final class NBDServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let registry: ConnectionRegistry
    let negotiationConfiguration: ServerNegotiationConfiguration
    let metrics: ServerMetrics

    private enum State { case created, running, stopping, stopped }
    private let condition = NSCondition()
    private var state: State = .created
    private var listeners: [ListeningSocket] = []
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1
    private var acceptorDone = false

    public init(configuration: ServerConfiguration, logger: Logger) throws {
        guard !configuration.exports.isEmpty else { throw ServerError(.badConfiguration, "no export configured") }
        var names = Set<String>()
        for export in configuration.exports {
            guard names.insert(export.name).inserted else {
                throw ServerError(.badConfiguration, "export name '\(export.name)' is used twice")
            }
            do {
                try NBDString.checkEncodable(export.name, what: "export name")
                if let description = export.description { try NBDString.checkEncodable(description, what: "export description") }
            } catch {
                throw ServerError(.badConfiguration, "export '\(export.name)': \(error)")
            }
        }
        guard configuration.maxConnections >= 1 else {
            throw ServerError(.badConfiguration, "max connections must be at least 1")
        }
        if configuration.tlsMode != .off && configuration.tlsProvider == nil {
            throw ServerError(.badConfiguration, "TLS mode \(configuration.tlsMode) needs TLS credentials")
        }
        guard !configuration.listenAddresses.isEmpty else { throw ServerError(.badConfiguration, "nothing to listen on") }
        self.configuration = configuration
        self.logger = logger
        registry = ConnectionRegistry(maxConnections: configuration.maxConnections,
                                      handshakeTimeout: configuration.handshakeTimeout)
        metrics = ServerMetrics(factory: configuration.metricsFactory ?? MetricsSystem.factory,
                                exportNames: configuration.exports.map(\.name))
        let multiConn = configuration.maxConnections > 1
        let descriptors = configuration.exports.map { export in
            ExportDescriptor(
                name: export.name, description: export.description ?? "", size: export.device.size,
                transmissionFlags: .derived(from: export.device.capabilities, writable: export.isWritable,
                                            multiConnAllowed: multiConn),
                blockSizes: NBDBlockSizes(export.device.blockSizes),
                tlsOnly: export.tlsOnly,
                offersAllocationDepth: export.device.capabilities.contains(.allocationDepth),
                dirtyBitmaps: export.dirtyBitmaps.map(\.name))
        }
        negotiationConfiguration = ServerNegotiationConfiguration(
            exports: descriptors, tlsMode: configuration.tlsMode,
            tlsSupported: configuration.tlsProvider != nil,
            // An empty name selects the first export, so `nbd://host/` works with a named one.
            defaultExportName: configuration.exports[0].name)
    }

    deinit {
        if wakeRead >= 0 { Glibc.close(wakeRead) }
        if wakeWrite >= 0 { Glibc.close(wakeWrite) }
    }

    /// What the listeners are bound to, e.g. `["127.0.0.1:10809", "[::1]:10809"]`.
    public var boundAddresses: [String] {
        condition.lock(); defer { condition.unlock() }
        return listeners.map(\.boundDescription)
    }

    /// TCP ports actually bound (useful with port 0).
    public var boundPorts: [UInt16] {
        condition.lock(); defer { condition.unlock() }
        return listeners.compactMap(\.port)
    }

    public var connectionCount: Int { registry.count }

    func export(named name: String) -> ExportConfiguration? {
        configuration.exports.first { $0.name == name }
    }

    /// Binds every listen address and starts accepting. Throws (and binds nothing) when an
    /// address is unusable, e.g. `.addressInUse`.
    public func start() throws {
        SignalWatcher.ignoreSIGPIPE()
        var opened: [ListeningSocket] = []
        do {
            for address in configuration.listenAddresses {
                opened += try ListeningSocket.open(address)
            }
        } catch {
            opened.forEach { $0.close() }
            throw error
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            opened.forEach { $0.close() }
            throw ServerError(.cannotListen, "pipe: \(String(cString: strerror(errno)))", errno: errno)
        }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        condition.lock()
        listeners = opened
        wakeRead = fds[0]
        wakeWrite = fds[1]
        state = .running
        condition.unlock()
        registry.onLastWritableClientLeft = { [weak self] in
            guard let self, self.configuration.exitOnDisconnect else { return }
            self.logger.info("last client of a writable export disconnected: shutting down (--exit-on-disconnect)")
            self.shutdown()
        }
        registry.startWatchdog()
        let acceptor = Thread { [self] in acceptLoop() }
        acceptor.name = "nbd-accept"
        acceptor.start()
    }

    /// Starts a graceful shutdown and returns at once; idempotent.
    public func shutdown() {
        condition.lock()
        guard state == .running || state == .created else {
            condition.unlock()
            return
        }
        let wasRunning = state == .running
        state = .stopping
        condition.unlock()
        guard wasRunning else {
            finishStopping()
            return
        }
        let thread = Thread { [self] in performShutdown() }
        thread.name = "nbd-shutdown"
        thread.start()
    }

    /// Blocks until a shutdown has completed.
    public func waitUntilStopped() {
        condition.lock()
        while state != .stopped { condition.wait() }
        condition.unlock()
    }

    /// Asks the TLS provider to reload its credentials (SIGHUP).
    public func reloadCredentials() {
        guard let provider = configuration.tlsProvider else {
            logger.info("reload requested; no TLS credentials to reload")
            return
        }
        do {
            try provider.reloadCredentials()
            metrics.credentialsReloaded(ok: true)
            logger.info("TLS credentials reloaded")
        } catch {
            metrics.credentialsReloaded(ok: false)
            logger.error("reloading TLS credentials failed, keeping the old ones: \(error)")
        }
    }

    // MARK: Accepting

    private func acceptLoop() {
        let (sockets, wake) = condition.withLock { (listeners, wakeRead) }
        var pollSet = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        pollSet.append(pollfd(fd: wake, events: Int16(POLLIN), revents: 0))
        acceptLoop: while true {
            let ready = poll(&pollSet, nfds_t(pollSet.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("poll failed: \(String(cString: strerror(errno)))")
                break
            }
            if pollSet[pollSet.count - 1].revents != 0 { break }
            for index in 0..<sockets.count where pollSet[index].revents != 0 {
                pollSet[index].revents = 0
                if !acceptOne(from: sockets[index]) { break acceptLoop }
            }
        }
        condition.lock()
        acceptorDone = true
        condition.broadcast()
        condition.unlock()
    }

    /// Accepts one client; false when the listener is unusable.
    private func acceptOne(from listener: ListeningSocket) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                accept(listener.fd, $0, &length)
            }
        }
        if fd < 0 {
            switch errno {
            case EINTR, EAGAIN, ECONNABORTED, EPROTO, EPERM: return true
            case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                logger.error("accept: \(String(cString: strerror(errno))); pausing")
                usleep(100_000)
                return true
            default:
                logger.error("accept on \(listener.boundDescription) failed: \(String(cString: strerror(errno)))")
                return false
            }
        }
        // accept4 is not importable; set close-on-exec right away (we never fork-exec anyway).
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let peer = ListeningSocket.describe(&address)
        let transport: ServerMetrics.Transport = Int32(address.ss_family) == AF_UNIX ? .unix : .tcp
        if transport == .tcp {
            // Small replies must not wait for Nagle (docs/architecture.md §3.5).
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let socket = SocketStream(fd: fd)
        let admission = registry.admit {
            ClientConnection(id: $0, socket: socket, peer: peer, transport: transport, server: self, logger: logger)
        }
        guard case let .admitted(connection) = admission else {
            let full = admission == .full
            metrics.connectionRefused(full ? .limit : .shuttingDown)
            let why = full ? "\(configuration.maxConnections) connections open (the limit)" : "shutting down"
            logger.warning("refusing \(peer): \(why)")
            socket.close()
            return true
        }
        metrics.connectionAccepted(transport)
        let thread = Thread { connection.run() }
        thread.name = "nbd-conn-\(connection.id)"
        thread.stackSize = 512 << 10
        thread.start()
        return true
    }

    // MARK: Shutdown

    private func performShutdown() {
        logger.info("shutting down: no new connections; finishing requests in flight")
        registry.stopAdmitting()
        condition.lock()
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
        while !acceptorDone { condition.wait() }
        let sockets = listeners
        condition.unlock()
        sockets.forEach { $0.close() }

        for connection in registry.snapshot() {
            if connection.isNegotiating { connection.abort() } else { connection.stopReading() }
        }
        if !registry.waitUntilEmpty(timeout: configuration.shutdownGracePeriod) {
            logger.warning("connections still busy after \(configuration.shutdownGracePeriod)s; cutting them")
            registry.snapshot().forEach { $0.abort() }
            _ = registry.waitUntilEmpty(timeout: 5)
        }
        finishStopping()
    }

    /// Flushes and closes every device, then marks the server stopped.
    private func finishStopping() {
        for export in configuration.exports {
            do {
                try export.device.close()
            } catch {
                logger.error("closing export '\(export.name)': \(error)")
            }
        }
        logger.info("stopped")
        condition.lock()
        state = .stopped
        condition.broadcast()
        condition.unlock()
    }
}

extension NBDBlockSizes {
    init(_ constraints: BlockSizeConstraints) {
        self.init(minimum: constraints.minimum, preferred: constraints.preferred, maximumPayload: constraints.maximumPayload)
    }
}

extension NSCondition {
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
