import NBDProtocol

/// Blocking calls: submit, then wait. Large READ/WRITE are split at the maximum payload and
/// the pieces pipelined.
extension NBDConnection {
    /// Reads `buffer.count` bytes at `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        let group = RequestGroup()
        forEachPiece(count: buffer.count) { start, end in
            group.enter()
            submitRead(into: UnsafeMutableRawBufferPointer(rebasing: buffer[start..<end]), at: offset + UInt64(start)) {
                group.leave($0.map { .done })
            }
        }
        _ = try group.wait()
    }

    /// Writes `data` at `offset`.
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool = false) throws {
        let group = RequestGroup()
        forEachPiece(count: data.count) { start, end in
            group.enter()
            submitWrite(UnsafeRawBufferPointer(rebasing: data[start..<end]), at: offset + UInt64(start), fua: fua) {
                group.leave($0.map { .done })
            }
        }
        _ = try group.wait()
    }

    /// Runs one payload-less command and waits for its reply.
    @discardableResult
    public func perform(_ command: NBDCommand, offset: UInt64 = 0, length: UInt64 = 0, flags: CommandFlags = []) throws -> CommandReply {
        let result = BlockingResult<CommandReply>()
        submit(command, offset: offset, length: length, flags: flags) { result.complete($0) }
        return try result.wait().get()
    }

    /// Calls `body(start, end)` for consecutive pieces of at most `maximumPayload` bytes.
    func forEachPiece(count: Int, _ body: (Int, Int) -> Void) {
        let step = Int(maximumPayload)
        var start = 0
        repeat {
            let end = min(count, start + step)
            body(start, end)
            start = end
        } while start < count
    }
}
