#if canImport(Glibc)
import Glibc
#endif
import NBDProtocol
import NBDTLS

/// Entry points shared by the libFuzzer targets of this module (Fuzz/uri, Fuzz/client-replies)
/// and their regression tests.
package enum ClientFuzzEntryPoints {
    /// An NBD URI (UTF-8, possibly invalid): parsed; a parsed URI must print as a URI that
    /// parses again to the same value.
    package static func uri(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = NBDURI.looksLikeURI(text)
        guard let uri = try? NBDURI(text) else { return }
        _ = uri.certificateHostname
        let printed = uri.description
        guard let again = try? NBDURI(printed) else {
            fatalError("NBDURI printed '\(printed)' for '\(text)', which does not parse")
        }
        _ = again == uri
    }

    /// Transmission replies: a connection in transmission whose server is the fuzzer's bytes.
    /// Byte 0 chooses the negotiated state: bits 0–1 the reply mode (simple/structured/
    /// extended/extended), bit 2 base:allocation and qemu:allocation-depth negotiated (ids 1
    /// and 2). Five requests are in flight before the first reply byte is read: READ 4096 at 0
    /// (cookie 1), READ 512 at 8192 (2), BLOCK_STATUS 64 KiB at 0 (3, when contexts were
    /// negotiated), WRITE 512 at 512 (4), FLUSH (5). The rest is the reply stream; the reader
    /// must end every request with a result and then stop, whatever it says.
    package static func replyStream(_ bytes: [UInt8]) {
        guard let selector = bytes.first else { return }
        let mode: NBDReplyMode = [.simple, .structured, .extended, .extended][Int(selector & 3)]
        let contexts = selector & 4 != 0 && mode != .simple
            ? [NegotiatedMetaContext(id: 1, name: "base:allocation"), NegotiatedMetaContext(id: 2, name: "qemu:allocation-depth")] : []
        let export = NegotiatedExport(requestedName: "", size: 1 << 20,
                                      flags: [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendCache, .sendDF],
                                      replyMode: mode, metaContexts: contexts)
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return }
        Glibc.close(fds[1])
        let stream = ScriptedReplyStream(Array(bytes.dropFirst()))
        weak var released: NBDConnection?
        // The reader thread is detached and still unwinding (holding the connection and its
        // last error) when close() returns; libFuzzer's per-input leak check must not run
        // before it has let go, or it reports those objects as leaked (a race of the harness
        // seen in CI, not a leak: replaying the input never reproduces it).
        defer {
            for _ in 0..<50_000 where released != nil { usleep(100) }
            fuzzCheck(released == nil, "the reader thread still holds the connection 5 s after close()")
        }
        guard let connection = try? NBDConnection(stream: stream, socket: SocketStream(fd: fds[0]), export: export,
                                                  maximumInFlight: 8) else { return }
        released = connection
        let buffers = [UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16),
                       UnsafeMutableRawBufferPointer.allocate(byteCount: 512, alignment: 16)]
        defer { buffers.forEach { $0.deallocate() } }
        let results = Results()
        connection.submitRead(into: buffers[0], at: 0) { results.add($0.map { _ in .done }) }
        connection.submitRead(into: buffers[1], at: 8192) { results.add($0.map { _ in .done }) }
        connection.submit(.blockStatus, offset: 0, length: 65536) { results.add($0) }
        let payload = [UInt8](repeating: 0x5a, count: 512)
        payload.withUnsafeBytes { data in connection.submitWrite(data, at: 512) { results.add($0.map { _ in .done }) } }
        connection.submit(.flush) { results.add($0) }
        stream.open()
        // Returns once the reader has finished: every request has completed by then.
        connection.close()
        fuzzCheck(results.count == 5, "\(results.count) of 5 requests completed")
    }

    /// Completion counter.
    final class Results: @unchecked Sendable {
        private let lock = ConditionLock()
        private var completed = 0
        func add(_ result: Result<CommandReply, NBDClientError>) { lock.withLock { completed += 1 } }
        var count: Int { lock.withLock { completed } }
    }
}

/// The server's side of a connection as a byte array: reads wait until `open()` (so every
/// request is in flight before the first reply arrives), then deliver the bytes in pieces of
/// at most 4 KiB; writes are dropped.
final class ScriptedReplyStream: ByteStream, @unchecked Sendable {
    private let bytes: [UInt8]
    private var position = 0
    private var isOpen = false
    private let lock = ConditionLock()

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func open() {
        lock.withLock {
            isOpen = true
            lock.broadcast()
        }
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        lock.withLock {
            while !isOpen { lock.wait() }
            let count = min(buffer.count, bytes.count - position, 4096)
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position ..< position + count]))
            }
            position += count
            return count
        }
    }

    func write(_ parts: [UnsafeRawBufferPointer]) throws {}

    func close() {
        // A closed connection reads as the end of the stream.
        open()
    }
}

/// A harness invariant: unlike `precondition`, the message survives optimised builds, so the
/// fuzzer's crash report says what was violated.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
