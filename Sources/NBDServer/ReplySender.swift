import Foundation
import NBDProtocol
import NBDTLS

/// Serialises whole replies onto the connection's stream: each reply (all its chunks)
/// leaves in one `ByteStream.write` call under the writer lock, so replies of different
/// requests never interleave inside a message and header + payload share a send.
/// Framing decisions come from NBDProtocol's `ReplyBuilder`.
///
/// Small replies without data (WRITE/FLUSH/TRIM successes, errors) are copied into a queue
/// when another thread is sending; the thread holding the writer lock sends them along with
/// its own reply (or right after it), so busy workers neither wait on the lock nor wake the
/// client once per 16-byte reply.
final class ReplySender: @unchecked Sendable {
    let builder: ReplyBuilder
    private let stream: any ByteStream
    private let lock = NSLock()
    /// Guards `pending` only; never held while sending.
    private let pendingLock = NSLock()
    /// Small replies queued for whoever holds `lock` next.
    private var pending: [UInt8] = []
    /// The queue taken by the current sender (only touched under `lock`).
    private var taken: [UInt8] = []
    private var failed = false
    /// Called once when sending fails (the peer is gone): the connection stops reading.
    private let onFailure: @Sendable (any Error) -> Void

    init(stream: any ByteStream, form: ReplyForm, onFailure: @escaping @Sendable (any Error) -> Void) {
        self.stream = stream
        builder = ReplyBuilder(form: form)
        self.onFailure = onFailure
    }

    /// Sends `parts` as one unit (preceded by any queued small replies). Errors are
    /// reported once through `onFailure`; later replies on a broken connection are dropped.
    func send(_ parts: [UnsafeRawBufferPointer]) {
        lock.lock()
        sendHoldingLock(parts)
        lock.unlock()
        sendQueued()
    }

    /// A reply without bulk data: it may leave together with other replies. Returns once it
    /// is sent or queued for a thread that is sending right now (which sends it before that
    /// thread's `send` returns).
    func send(_ bytes: [UInt8]) {
        pendingLock.lock()
        pending += bytes
        pendingLock.unlock()
        sendQueued()
    }

    func sendSuccess(cookie: UInt64, requestOffset: UInt64) {
        send(builder.success(cookie: cookie, requestOffset: requestOffset))
    }

    func sendError(cookie: UInt64, requestOffset: UInt64, error: NBDErrno, message: String) {
        send(builder.error(cookie: cookie, requestOffset: requestOffset, error: error, message: message))
    }

    /// Sends queued replies unless another thread holds the writer lock. Queuing happens
    /// before this check and every lock holder checks again after unlocking, so a queued
    /// reply is never left behind.
    private func sendQueued() {
        while hasQueued && lock.try() {
            sendHoldingLock([])
            lock.unlock()
        }
    }

    private var hasQueued: Bool {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        return !pending.isEmpty
    }

    private func sendHoldingLock(_ parts: [UnsafeRawBufferPointer]) {
        pendingLock.lock()
        swap(&pending, &taken)
        pendingLock.unlock()
        defer { taken.removeAll(keepingCapacity: true) }
        guard !failed else { return }
        taken.withUnsafeBytes { queued in
            var all = parts
            if queued.count > 0 { all.insert(queued, at: 0) }
            guard !all.isEmpty else { return }
            do {
                try stream.write(all)
            } catch {
                failed = true
                onFailure(error)
            }
        }
    }
}
