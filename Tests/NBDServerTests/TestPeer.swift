import Foundation
import NBDProtocol
import NBDTLS

/// A hand-driven NBD peer for engine tests: writes raw requests and parses replies with the
/// NBDProtocol codecs, so each test states exactly what goes over the wire.
final class TestPeer: @unchecked Sendable {
    let stream: SocketStream

    init(fd: Int32) {
        stream = SocketStream(fd: fd)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws { try stream.write(bytes) }

    func send(_ request: NBDRequest, form: NBDRequest.Form = .compact, payload: [UInt8] = []) throws {
        try stream.write(try request.encoded(form: form) + payload)
    }

    func read(_ count: Int) throws -> [UInt8] { try stream.readExactly(count: count) }

    func simpleReply(dataLength: Int = 0) throws -> (header: SimpleReplyHeader, data: [UInt8]) {
        let header = try SimpleReplyHeader(decoding: try read(SimpleReplyHeader.wireSize))
        let data = header.error == .success && dataLength > 0 ? try read(dataLength) : []
        return (header, data)
    }

    struct Chunk {
        var header: ReplyChunkHeader
        var payload: [UInt8]
    }

    /// One structured (or extended) chunk.
    func chunk(extended: Bool = false) throws -> Chunk {
        let header: ReplyChunkHeader
        if extended {
            header = ReplyChunkHeader(try ExtendedChunkHeader(decoding: try read(ExtendedChunkHeader.wireSize)))
        } else {
            header = ReplyChunkHeader(try StructuredChunkHeader(decoding: try read(StructuredChunkHeader.wireSize)))
        }
        return Chunk(header: header, payload: try read(Int(header.length)))
    }

    /// All chunks of one reply (until DONE), bounded.
    func chunks(extended: Bool = false) throws -> [Chunk] {
        var result: [Chunk] = []
        for _ in 0..<10_000 {
            let next = try chunk(extended: extended)
            result.append(next)
            if next.header.isDone { break }
        }
        return result
    }

    /// True when the server closed the connection (EOF) within the receive timeout.
    func isClosedByServer() -> Bool {
        var byte: [UInt8] = [0]
        let n = try? byte.withUnsafeMutableBytes { try stream.read(into: $0) }
        return n == 0 || n == nil
    }

    func close() { stream.close() }
}

/// Reassembles a structured READ reply into bytes; holes become zeroes.
func reassemble(_ chunks: [TestPeer.Chunk], offset: UInt64, length: Int) throws -> [UInt8] {
    var data = [UInt8](repeating: 0xEE, count: length)
    var covered = 0
    for chunk in chunks {
        switch chunk.header.type {
        case .offsetData:
            let start = Int(try OffsetDataChunkPrefix(decoding: Array(chunk.payload.prefix(8))).offset - offset)
            let bytes = chunk.payload.dropFirst(8)
            data.replaceSubrange(start..<start + bytes.count, with: bytes)
            covered += bytes.count
        case .offsetHole:
            let hole = try OffsetHoleChunkPayload(decoding: chunk.payload)
            let start = Int(hole.offset - offset)
            data.replaceSubrange(start..<start + Int(hole.holeSize), with: repeatElement(0, count: Int(hole.holeSize)))
            covered += Int(hole.holeSize)
        case .none:
            break
        default:
            throw NBDProtocolError(.invalidValue, "unexpected chunk \(chunk.header.type)")
        }
    }
    guard covered == length else { throw NBDProtocolError(.lengthMismatch, "chunks covered \(covered) of \(length)") }
    return data
}

/// A connected pair of Unix stream sockets: (server side fd, client side fd).
func makeSocketPair() throws -> (Int32, Int32) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
        throw NBDProtocolError(.invalidValue, "socketpair failed: \(errno)")
    }
    return (fds[0], fds[1])
}

/// Runs `body` on a new thread; `wait()` returns its result (bounded).
final class Background<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: T?

    init(_ body: @escaping @Sendable () -> T) {
        let thread = Thread { [self] in
            result = body()
            done.signal()
        }
        thread.start()
    }

    func wait(seconds: Double = 20) -> T? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        return result
    }
}
