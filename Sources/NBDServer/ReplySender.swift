import Foundation
import NBDProtocol
import NBDTLS

/// Serialises whole replies onto the connection's stream: each reply (all its chunks)
/// leaves in one `ByteStream.write` call under the writer lock, so replies of different
/// requests never interleave inside a message and header + payload share a send.
/// Framing decisions come from NBDProtocol's `ReplyBuilder`.
final class ReplySender: @unchecked Sendable {
    let builder: ReplyBuilder
    private let stream: any ByteStream
    private let lock = NSLock()
    private var failed = false
    /// Called once when sending fails (the peer is gone): the connection stops reading.
    private let onFailure: @Sendable (any Error) -> Void

    init(stream: any ByteStream, form: ReplyForm, onFailure: @escaping @Sendable (any Error) -> Void) {
        self.stream = stream
        builder = ReplyBuilder(form: form)
        self.onFailure = onFailure
    }

    /// Sends `parts` as one unit. Errors are reported once through `onFailure`; later
    /// replies on a broken connection are dropped silently.
    func send(_ parts: [UnsafeRawBufferPointer]) {
        lock.lock()
        defer { lock.unlock() }
        guard !failed else { return }
        do {
            try stream.write(parts)
        } catch {
            failed = true
            onFailure(error)
        }
    }

    func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { send([$0]) }
    }

    func sendSuccess(cookie: UInt64, requestOffset: UInt64) {
        send(builder.success(cookie: cookie, requestOffset: requestOffset))
    }

    func sendError(cookie: UInt64, requestOffset: UInt64, error: NBDErrno, message: String) {
        send(builder.error(cookie: cookie, requestOffset: requestOffset, error: error, message: message))
    }
}
