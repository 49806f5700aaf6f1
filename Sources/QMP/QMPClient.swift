import Foundation

/// A QMP client: connects to QEMU's monitor socket, reads the greeting, negotiates
/// capabilities, runs commands matched to their replies by `id`, and queues asynchronous
/// events for `waitForEvent`. Thread-safe; one reader thread per connection.
///
/// Malformed input from QEMU (a line that is not JSON, or not a QMP message) ends the
/// connection with a `.malformedMessage` error: after garbage nothing in the stream can be
/// trusted to belong to the command we are waiting for.
public final class QMPClient: @unchecked Sendable {
    /// The `QMP` member of QEMU's greeting (`version`, `capabilities`).
    public private(set) var greeting: QMPValue = .null
    private let socket: QMPSocket
    private let state: QMPClientState

    /// Connects to a Unix socket, retrying while it does not exist yet (QEMU creates it a
    /// moment after start), then performs the handshake.
    public convenience init(unixPath: String, timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var lastError: QMPError
        repeat {
            do {
                try self.init(socket: QMPSocket.connect(unixPath: unixPath), timeout: max(0.1, deadline.timeIntervalSinceNow))
                return
            } catch let error as QMPError where error.code == .connectionFailed {
                lastError = error
                usleep(20_000)
            }
        } while Date() < deadline
        throw lastError
    }

    /// Takes ownership of an already connected stream socket (used by tests with a socketpair).
    public convenience init(adoptingFileDescriptor fd: Int32, timeout: Double = 10) throws {
        try self.init(socket: QMPSocket(adopting: fd), timeout: timeout)
    }

    init(socket: QMPSocket, timeout: Double) throws {
        self.socket = socket
        self.state = QMPClientState()
        let thread = Thread { [socket, state] in QMPClient.readLoop(socket: socket, state: state) }
        thread.name = "qmp-reader"
        thread.start()
        do {
            greeting = try state.waitForGreeting(deadline: Date().addingTimeInterval(timeout))
            _ = try execute("qmp_capabilities", timeout: timeout)
        } catch var error as QMPError {
            socket.shutdown()
            if error.code == .commandFailed || error.code == .timedOut { error.code = .handshakeFailed }
            throw error
        }
    }

    deinit {
        socket.shutdown()
    }

    /// Closes the connection; pending and later calls fail with `.connectionClosed`.
    public func close() {
        socket.shutdown()
    }

    /// Runs one command and returns its `return` value, or throws `.commandFailed` carrying
    /// QEMU's error class and description.
    @discardableResult
    public func execute(_ command: String, _ arguments: [String: QMPValue]? = nil, timeout: Double = 30) throws -> QMPValue {
        let id = state.register()
        var message: [String: QMPValue] = ["execute": .string(command), "id": .string(id)]
        if let arguments { message["arguments"] = .object(arguments) }
        do {
            try socket.writeAll(Array((QMPValue.object(message).description + "\r\n").utf8))
        } catch var error as QMPError {
            state.abandon(id)
            // A failed write usually means QEMU went away; the reader's account of why
            // (closed, closed mid-message, garbage) is more useful than EPIPE.
            if let closed = state.terminalError(within: 1) { error = closed }
            error.command = command
            throw error
        }
        switch state.waitForReply(id: id, deadline: Date().addingTimeInterval(timeout)) {
        case let .success(value):
            return value
        case var .failure(error):
            error.command = command
            if error.code == .timedOut { error.message = "no reply within \(timeout) s" }
            throw error
        }
    }

    /// Waits for the first queued or future event that satisfies `predicate` and removes it
    /// from the queue; events that do not match stay queued for later waits.
    public func waitForEvent(timeout: Double, _ what: String = "event",
                             where predicate: (QMPEvent) -> Bool) throws -> QMPEvent {
        try state.waitForEvent(deadline: Date().addingTimeInterval(timeout), what: what, predicate)
    }

    /// Waits for an event by name (and optionally a predicate on it).
    public func waitForEvent(named name: String, timeout: Double,
                             where predicate: (QMPEvent) -> Bool = { _ in true }) throws -> QMPEvent {
        try waitForEvent(timeout: timeout, name) { $0.name == name && predicate($0) }
    }

    /// Removes and returns every queued event.
    public func takeEvents() -> [QMPEvent] {
        state.takeEvents()
    }

    /// Whether the connection is still open.
    public var isConnected: Bool { state.isOpen }

    private static func readLoop(socket: QMPSocket, state: QMPClientState) {
        var lines = QMPLineBuffer()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try socket.read(into: $0) }
            } catch let error as QMPError {
                state.fail(error)
                return
            } catch {
                state.fail(QMPError(.ioFailed, "\(error)"))
                return
            }
            if count == 0 {
                let rest = lines.unterminated
                let detail = rest.isEmpty ? "QEMU closed the QMP connection"
                    : "QEMU closed the QMP connection in the middle of a message: \(QMPValue.preview(rest))"
                state.fail(QMPError(.connectionClosed, detail))
                return
            }
            do {
                for line in try lines.append(buffer[0..<count]) {
                    try state.deliver(QMPMessage(line: line))
                }
            } catch let error as QMPError {
                state.fail(error)
                socket.shutdown()
                return
            } catch {
                state.fail(QMPError(.malformedMessage, "\(error)"))
                socket.shutdown()
                return
            }
        }
    }
}
