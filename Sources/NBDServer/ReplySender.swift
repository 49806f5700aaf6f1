import Foundation
import NBDProtocol
import NBDTLS

/// How replies are framed on a connection, fixed at the end of negotiation.
enum ReplyFraming: Sendable, Equatable {
    /// No structured replies: 16-byte simple replies only.
    case simple
    /// Structured replies with compact (20-byte) chunk headers.
    case structured
    /// Extended headers: 32-byte chunk headers for every reply; simple replies forbidden.
    case extended
}

/// Serialises whole replies onto the connection's stream: each reply (all its chunks)
/// leaves in one `ByteStream.write` call under the writer lock, so replies of different
/// requests never interleave inside a message and header + payload share a send.
final class ReplySender: @unchecked Sendable {
    let framing: ReplyFraming
    private let stream: any ByteStream
    private let lock = NSLock()
    private var failed = false
    /// Called once when sending fails (the peer is gone): the connection stops reading.
    private let onFailure: @Sendable (any Error) -> Void

    init(stream: any ByteStream, framing: ReplyFraming, onFailure: @escaping @Sendable (any Error) -> Void) {
        self.stream = stream
        self.framing = framing
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

    // MARK: Framing helpers

    /// A chunk header in this connection's framing (structured or extended).
    func chunkHeader(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, requestOffset: UInt64, length: Int) -> [UInt8] {
        switch framing {
        case .extended:
            return ExtendedChunkHeader(flags: flags, type: type, cookie: cookie, offset: requestOffset, length: UInt64(length)).bytes
        case .structured, .simple:
            return StructuredChunkHeader(flags: flags, type: type, cookie: cookie, length: UInt32(clamping: length)).bytes
        }
    }

    /// Success without payload: a simple reply, or a NONE chunk with DONE under extended headers.
    func sendSuccess(cookie: UInt64, requestOffset: UInt64) {
        switch framing {
        case .simple, .structured:
            send(SimpleReplyHeader(error: .success, cookie: cookie).bytes)
        case .extended:
            send(chunkHeader(flags: .done, type: .none, cookie: cookie, requestOffset: requestOffset, length: 0))
        }
    }

    /// Failure of a request. `structuredRequired`: the command's replies must be structured
    /// when structured replies are on (READ, BLOCK_STATUS); others may use a simple reply.
    func sendError(cookie: UInt64, requestOffset: UInt64, error: NBDErrno, message: String, structuredRequired: Bool) {
        let useChunk: Bool
        switch framing {
        case .simple: useChunk = false
        case .structured: useChunk = structuredRequired
        case .extended: useChunk = true
        }
        guard useChunk else {
            send(SimpleReplyHeader(error: error, cookie: cookie).bytes)
            return
        }
        // Keep messages short: QEMU prints them, and non-data chunks should stay small.
        let payload = (try? ErrorChunkPayload(error: error, message: String(message.utf8.prefix(200)) ?? "").encoded())
            ?? (try! ErrorChunkPayload(error: error, message: "").encoded())
        let header = chunkHeader(flags: .done, type: .error, cookie: cookie, requestOffset: requestOffset, length: payload.count)
        header.withUnsafeBytes { h in payload.withUnsafeBytes { p in send([h, p]) } }
    }
}
