import Foundation

/// The shared state between a `QMPClient`'s callers and its reader thread: the greeting,
/// replies by id, the event queue and the terminal error. All access under one condition.
final class QMPClientState: @unchecked Sendable {
    /// Events kept at most; older ones are dropped so a chatty VM cannot grow memory forever.
    static let maximumQueuedEvents = 10_000

    private let condition = NSCondition()
    private var greeting: QMPValue?
    private var waiting: Set<String> = []
    private var replies: [String: Result<QMPValue, QMPError>] = [:]
    private var events: [QMPEvent] = []
    private var terminalError: QMPError?
    private var nextID = 1

    var isOpen: Bool {
        condition.lock(); defer { condition.unlock() }
        return terminalError == nil
    }

    func register() -> String {
        condition.lock(); defer { condition.unlock() }
        let id = "swiftnbd-\(nextID)"
        nextID += 1
        waiting.insert(id)
        return id
    }

    func abandon(_ id: String) {
        condition.lock(); defer { condition.unlock() }
        waiting.remove(id)
        replies[id] = nil
    }

    /// Called by the reader thread for each message.
    func deliver(_ message: QMPMessage) throws {
        condition.lock(); defer { condition.unlock() }
        switch message {
        case let .greeting(value):
            guard greeting == nil else { throw QMPError(.malformedMessage, "second QMP greeting: \(value)") }
            greeting = value
        case let .event(event):
            events.append(event)
            if events.count > Self.maximumQueuedEvents { events.removeFirst(events.count - Self.maximumQueuedEvents) }
        case let .success(id, value):
            try store(.success(value), for: id)
        case let .failure(id, errorClass, description):
            try store(.failure(QMPError(.commandFailed, description, errorClass: errorClass)), for: id)
        }
        condition.broadcast()
    }

    /// Replies for ids we no longer wait for (timed out) are dropped. A reply without an id
    /// happens when QEMU could not parse our request; it can only be matched when exactly one
    /// command is outstanding.
    private func store(_ result: Result<QMPValue, QMPError>, for id: QMPValue?) throws {
        guard greeting != nil else { throw QMPError(.malformedMessage, "reply before the QMP greeting") }
        if let id {
            guard let key = id.stringValue else { return }
            if waiting.contains(key) { replies[key] = result }
        } else if waiting.count == 1, let only = waiting.first {
            replies[only] = result
        } else {
            throw QMPError(.malformedMessage, "reply without id while \(waiting.count) commands are outstanding")
        }
    }

    func fail(_ error: QMPError) {
        condition.lock(); defer { condition.unlock() }
        if terminalError == nil { terminalError = error }
        condition.broadcast()
    }

    /// The error that ended the connection, waiting up to `seconds` for the reader to see it.
    func terminalError(within seconds: Double) -> QMPError? {
        condition.lock(); defer { condition.unlock() }
        let deadline = Date().addingTimeInterval(seconds)
        while terminalError == nil && condition.wait(until: deadline) {}
        return terminalError
    }

    func waitForGreeting(deadline: Date) throws -> QMPValue {
        condition.lock(); defer { condition.unlock() }
        while true {
            if let greeting { return greeting }
            if let terminalError {
                var error = terminalError
                if error.code == .connectionClosed { error.message = "closed before the QMP greeting: " + error.message }
                throw error
            }
            if !condition.wait(until: deadline) && greeting == nil && terminalError == nil {
                throw QMPError(.handshakeFailed, "no QMP greeting received")
            }
        }
    }

    func waitForReply(id: String, deadline: Date) -> Result<QMPValue, QMPError> {
        condition.lock(); defer { condition.unlock() }
        defer { waiting.remove(id); replies[id] = nil }
        while true {
            if let reply = replies[id] { return reply }
            if let terminalError { return .failure(terminalError) }
            if !condition.wait(until: deadline), replies[id] == nil, terminalError == nil {
                return .failure(QMPError(.timedOut, "no reply"))
            }
        }
    }

    func waitForEvent(deadline: Date, what: String, _ predicate: (QMPEvent) -> Bool) throws -> QMPEvent {
        condition.lock(); defer { condition.unlock() }
        while true {
            if let index = events.firstIndex(where: predicate) {
                return events.remove(at: index)
            }
            if let terminalError {
                var error = terminalError
                error.message = "while waiting for \(what): " + error.message
                throw error
            }
            if !condition.wait(until: deadline), !events.contains(where: predicate), self.terminalError == nil {
                throw QMPError(.timedOut, "no \(what) before the time limit")
            }
        }
    }

    func takeEvents() -> [QMPEvent] {
        condition.lock(); defer { condition.unlock() }
        defer { events.removeAll() }
        return events
    }
}
