import BlockDevices
import Foundation
import Logging
import NBDProtocol
import NBDTLS

/// One client: negotiation on its own thread, then the transmission phase.
/// A failure here (bad bytes, vanished peer, TLS error) ends this connection only.
final class ClientConnection: @unchecked Sendable {
    enum Phase: Sendable { case negotiating, transmission, closing }

    let id: Int
    let peer: String
    let transport: ServerMetrics.Transport
    let acceptedAt = Date()
    let socket: SocketStream
    unowned let server: NBDServer
    var logger: Logger
    private let lock = NSLock()
    private var phase: Phase = .negotiating
    /// Cleared (under `lock`) before the descriptor is closed, so a late `abort()` from the
    /// watchdog or shutdown can never hit a descriptor number reused by a newer connection.
    private var socketOpen = true
    /// Set (under `lock`) when the handshake deadline dropped this client: the watchdog may
    /// call `abortHandshake` again before the thread ends, and it must count once.
    private var handshakeTimedOut = false
    /// The stream in use: the socket, or the TLS session after STARTTLS.
    private(set) var stream: any ByteStream

    init(id: Int, socket: SocketStream, peer: String, transport: ServerMetrics.Transport = .tcp, server: NBDServer, logger: Logger) {
        self.id = id
        self.socket = socket
        self.peer = peer
        self.transport = transport
        self.server = server
        self.stream = socket
        var logger = logger
        logger[metadataKey: "conn"] = "\(id)"
        logger[metadataKey: "peer"] = "\(peer)"
        self.logger = logger
    }

    var isNegotiating: Bool {
        lock.lock(); defer { lock.unlock() }
        return phase == .negotiating
    }

    /// Runs the whole connection on the calling thread.
    func run() {
        var writableClient = false
        var metricsPhase = ServerMetrics.Phase.negotiating
        defer {
            lock.lock()
            phase = .closing
            socketOpen = false
            lock.unlock()
            stream.close()
            socket.close()
            server.metrics.connectionClosed(transport, phase: metricsPhase)
            server.registry.remove(self, wasWritableClient: writableClient)
        }
        logger.debug("connected")
        guard let session = negotiate() else { return }
        guard let export = server.export(named: session.exportName) else {
            logger.error("negotiated export '\(session.exportName)' is not configured")
            return
        }
        guard setPhase(.transmission, onlyFrom: .negotiating) else { return }
        server.metrics.connectionEnteredTransmission(transport)
        metricsPhase = .transmission
        writableClient = export.isWritable
        server.registry.enteredTransmission(self, writable: writableClient)
        let context = TransmissionContext(session: session, device: export.device, dirtyBitmaps: export.dirtyBitmaps)
        logger.info("transmission on '\(session.exportName)' (\(session.replyForm), flags \(session.transmissionFlags)\(session.tlsActive ? ", TLS" : "")\(session.peerIdentity.map { ", peer \($0)" } ?? ""))")
        let driver = TransmissionDriver(
            context: context, stream: stream, logger: logger,
            maxThreads: server.configuration.workerThreadsPerConnection,
            inFlightLimit: server.configuration.maxInFlightPerConnection,
            metrics: server.metrics.export(named: session.exportName),
            onSendFailure: { [weak self] _ in self?.abort() })
        switch driver.run() {
        case .clientDisconnected: logger.info("client disconnected")
        case .connectionClosed: logger.info("connection closed")
        case let .protocolViolation(reason): logger.warning("dropping client: \(reason)")
        }
    }

    /// Graceful shutdown: stop reading requests; those already read are still answered.
    func stopReading() {
        shutdownSocket(Int32(SHUT_RD))
    }

    /// Hard stop (handshake deadline, shutdown of a client still negotiating, grace expired).
    func abort() {
        shutdownSocket(Int32(SHUT_RDWR))
    }

    /// The TLS layer closed the descriptor itself (failed handshake): never touch it again.
    func markSocketClosed() {
        lock.lock(); defer { lock.unlock() }
        socketOpen = false
    }

    private func shutdownSocket(_ how: Int32) {
        lock.lock(); defer { lock.unlock() }
        if socketOpen { _ = Glibc.shutdown(socket.fd, how) }
    }

    func abortHandshake(reason: String) {
        let firstTime = lock.withLock { () -> Bool in
            guard phase == .negotiating, !handshakeTimedOut else { return false }
            handshakeTimedOut = true
            return true
        }
        guard firstTime else { return }
        server.metrics.connectionRefused(.handshakeTimeout)
        logger.warning("dropping client: \(reason)")
        abort()
    }

    func replaceStream(_ newStream: any ByteStream) {
        lock.lock(); defer { lock.unlock() }
        stream = newStream
    }

    @discardableResult
    private func setPhase(_ new: Phase, onlyFrom expected: Phase? = nil) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if let expected, phase != expected { return false }
        phase = new
        return true
    }
}

