import NBDTLS

/// Reads the transmission phase through one buffer, so a pipelining client's request
/// headers (and small WRITE payloads) arrive with one `recv` for many requests instead of
/// one or two each. Only for the transmission phase: negotiation must read exactly by length
/// (bytes after STARTTLS belong to TLS), and nothing reads the stream after this reader.
/// Large payloads bypass the buffer and land straight in the caller's memory.
final class BufferedRequestReader {
    private let stream: any ByteStream
    private let storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0

    init(stream: any ByteStream, capacity: Int = 64 << 10) {
        self.stream = stream
        storage = .allocate(byteCount: capacity, alignment: 64)
    }

    deinit { storage.deallocate() }

    /// Runs before every receive that may wait for the peer (the reader sends its gathered
    /// replies there: the client may be waiting for them before it sends more).
    var beforeReceiving: (() -> Void)?

    /// Bytes already received and not yet consumed.
    var bufferedCount: Int { end - start }

    /// Fills `destination` completely, or throws `StreamError.endOfStream`.
    func readExactly(into destination: UnsafeMutableRawBufferPointer) throws {
        var filled = 0
        while filled < destination.count {
            if start < end {
                let take = min(end - start, destination.count - filled)
                (destination.baseAddress! + filled).copyMemory(from: storage.baseAddress! + start, byteCount: take)
                start += take
                filled += take
                continue
            }
            let missing = destination.count - filled
            if missing >= storage.count {
                // A big payload: no point staging it in the buffer.
                beforeReceiving?()
                let n = try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: destination[filled...]))
                if n == 0 { throw endOfStream(filled, destination.count) }
                filled += n
                continue
            }
            beforeReceiving?()
            start = 0
            end = try stream.read(into: storage)
            if end == 0 { throw endOfStream(filled, destination.count) }
        }
    }

    private func endOfStream(_ done: Int, _ count: Int) -> StreamError {
        StreamError(.endOfStream, "connection closed after \(done) of \(count) bytes")
    }
}
