/// Replies the reader thread produced itself, gathered while more requests are already
/// waiting in the input buffer and sent with one `ByteStream.write` (one `sendmsg`, or one
/// run of full TLS records) before the reader could block. A pipelining client's burst of
/// 4 KiB reads then costs one send instead of one per request.
///
/// Read data and reply headers live in one arena, so nothing is allocated per request.
final class ReplyBatch {
    private let arena: UnsafeMutableRawBufferPointer
    private var used = 0
    private var parts: [UnsafeRawBufferPointer] = []

    init(capacity: Int) {
        arena = .allocate(byteCount: capacity, alignment: 4096)
        parts.reserveCapacity(256)
    }

    deinit { arena.deallocate() }

    var isEmpty: Bool { parts.isEmpty }

    /// Room for `count` bytes of read data (64-byte aligned), or nil when the batch must be
    /// flushed first. The space belongs to the batch until the next `flush`.
    func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer? {
        let start = (used + 63) & ~63
        // Leave room for the reply header that goes with the data.
        guard start + count + 64 <= arena.count, parts.count < 1000 else { return nil }
        used = start + count
        return UnsafeMutableRawBufferPointer(rebasing: arena[start..<start + count])
    }

    /// Gives back the most recent reservation (the read could not be done immediately).
    func release(_ space: UnsafeMutableRawBufferPointer) {
        if let base = space.baseAddress, base + space.count == arena.baseAddress! + used {
            used = base - arena.baseAddress!
        }
    }

    /// Appends a reply: `header` (copied into the arena) followed by `data` (reserved here).
    func append(header: [UInt8], data: UnsafeRawBufferPointer) {
        let start = used
        precondition(start + header.count <= arena.count, "reply batch overflow")
        header.withUnsafeBytes { (arena.baseAddress! + start).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        used += header.count
        parts.append(UnsafeRawBufferPointer(rebasing: arena[start..<used]))
        parts.append(data)
    }

    /// Appends a reply without data (copied into the arena); false when it does not fit.
    func append(reply: [UInt8]) -> Bool {
        let start = used
        guard start + reply.count <= arena.count, parts.count < 1000 else { return false }
        reply.withUnsafeBytes { (arena.baseAddress! + start).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        used += reply.count
        parts.append(UnsafeRawBufferPointer(rebasing: arena[start..<used]))
        return true
    }

    /// Sends everything gathered as one unit and empties the batch.
    func flush(to sender: ReplySender) {
        if !parts.isEmpty { sender.send(parts) }
        parts.removeAll(keepingCapacity: true)
        used = 0
    }
}
