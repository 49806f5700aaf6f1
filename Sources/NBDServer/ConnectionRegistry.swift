import Foundation

/// The server's live connections: enforces `maxConnections`, drops clients that are still
/// negotiating after the handshake deadline (CVE-2024-7409), and tells the server when the
/// last transmission client of a writable export has left (`exitOnDisconnect`).
final class ConnectionRegistry: @unchecked Sendable {
    private let condition = NSCondition()
    private var connections: [Int: ClientConnection] = [:]
    private var nextID = 1
    private var stopping = false
    /// Transmission clients on writable exports seen so far / still connected.
    private var writableClientsSeen = 0
    private var writableClientsActive = 0

    let maxConnections: Int
    let handshakeTimeout: Double
    /// Called (once) when `exitOnDisconnect` conditions are met.
    var onLastWritableClientLeft: (@Sendable () -> Void)?

    init(maxConnections: Int, handshakeTimeout: Double) {
        self.maxConnections = maxConnections
        self.handshakeTimeout = handshakeTimeout
    }

    var count: Int {
        condition.lock(); defer { condition.unlock() }
        return connections.count
    }

    enum Admission: Equatable {
        case admitted(ClientConnection)
        case full
        case stopping

        static func == (lhs: Admission, rhs: Admission) -> Bool {
            switch (lhs, rhs) {
            case let (.admitted(a), .admitted(b)): a === b
            case (.full, .full), (.stopping, .stopping): true
            default: false
            }
        }
    }

    /// Registers a new connection, or says why not (the server is full or stopping).
    func admit(_ make: (Int) -> ClientConnection) -> Admission {
        condition.lock(); defer { condition.unlock() }
        if stopping { return .stopping }
        guard connections.count < maxConnections else { return .full }
        let id = nextID
        nextID += 1
        let connection = make(id)
        connections[id] = connection
        return .admitted(connection)
    }

    func enteredTransmission(_ connection: ClientConnection, writable: Bool) {
        condition.lock(); defer { condition.unlock() }
        if writable {
            writableClientsSeen += 1
            writableClientsActive += 1
        }
    }

    func remove(_ connection: ClientConnection, wasWritableClient: Bool) {
        var notify = false
        condition.lock()
        connections[connection.id] = nil
        if wasWritableClient {
            writableClientsActive -= 1
            notify = writableClientsActive == 0 && writableClientsSeen > 0
        }
        condition.broadcast()
        condition.unlock()
        if notify { onLastWritableClientLeft?() }
    }

    func snapshot() -> [ClientConnection] {
        condition.lock(); defer { condition.unlock() }
        return Array(connections.values)
    }

    /// Refuses new connections from now on.
    func stopAdmitting() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until no connection is left or `timeout` seconds pass; true when empty.
    func waitUntilEmpty(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock(); defer { condition.unlock() }
        while !connections.isEmpty {
            if !condition.wait(until: deadline) { return connections.isEmpty }
        }
        return true
    }

    /// Starts the thread that enforces the handshake deadline. It holds the registry only
    /// while it runs (until `stopAdmitting()`); the registry keeps no reference to the thread,
    /// since registry → thread → closure → registry was a cycle that leaked the registry, its
    /// connection table and the server's callbacks for every server started (LeakSanitizer).
    func startWatchdog() {
        guard handshakeTimeout > 0 else { return }
        let thread = Thread { [self] in
            condition.lock()
            while !stopping {
                let now = Date()
                for connection in connections.values where connection.isNegotiating && connection.acceptedAt.addingTimeInterval(handshakeTimeout) <= now {
                    connection.abortHandshake(reason: "no transmission after \(handshakeTimeout)s")
                }
                _ = condition.wait(until: Date().addingTimeInterval(min(0.25, handshakeTimeout / 4)))
            }
            condition.unlock()
        }
        thread.name = "handshake-watchdog"
        thread.start()
    }
}
