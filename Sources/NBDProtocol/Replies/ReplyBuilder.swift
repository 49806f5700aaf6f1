/// Builds the reply bytes of the transmission phase for one connection's reply form, so the
/// engine never chooses between simple, structured and extended framing itself.
///
/// Every function returns the header (plus any small fixed payload); bulk read data is sent by
/// the engine right after the bytes of `readData…`, as one unit with them.
///
/// ```
/// form        success (no data)        error                       read data
/// simple      simple reply, error 0    simple reply, errno         simple reply + data
/// structured  simple reply, error 0    ERROR chunk, DONE           OFFSET_DATA/OFFSET_HOLE chunks
/// extended    NONE chunk, DONE         ERROR chunk, DONE           same chunks, 32-byte headers
/// ```
/// (Structured mode may answer non-READ commands with simple replies; it uses a chunk for
/// errors so the client gets the message text. READ errors in structured mode must be chunks.)
public struct ReplyBuilder: Hashable, Sendable {
    public let form: ReplyForm

    public init(form: ReplyForm) { self.form = form }

    public init(session: NegotiatedSession) { self.init(form: session.replyForm) }

    // MARK: Chunk headers

    /// A chunk header in this connection's form. Throws in simple mode (no chunks exist) or
    /// when `payloadLength` does not fit a structured (32-bit) header.
    public func chunkHeader(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, requestOffset: UInt64,
                            payloadLength: UInt64) throws -> [UInt8] {
        switch form {
        case .simple:
            throw NBDProtocolError(.invalidValue, "no chunks without structured replies or extended headers")
        case .structured:
            guard let length = UInt32(exactly: payloadLength) else {
                throw NBDProtocolError(.valueOutOfRange, "chunk payload of \(payloadLength) bytes does not fit a structured header")
            }
            return StructuredChunkHeader(flags: flags, type: type, cookie: cookie, length: length).bytes
        case .extended:
            return ExtendedChunkHeader(flags: flags, type: type, cookie: cookie, offset: requestOffset, length: payloadLength).bytes
        }
    }

    // MARK: Whole replies

    /// Success of a command without reply data (WRITE, FLUSH, TRIM, CACHE, WRITE_ZEROES).
    /// Not for READ: a zero-length READ in structured/extended mode is answered with `noneChunk`.
    public func success(cookie: UInt64, requestOffset: UInt64) -> [UInt8] {
        switch form {
        case .simple, .structured:
            return SimpleReplyHeader(error: .success, cookie: cookie).bytes
        case .extended:
            return noneChunk(cookie: cookie, requestOffset: requestOffset)
        }
    }

    /// The final `NONE` chunk (DONE, no payload); in simple mode a success simple reply.
    public func noneChunk(cookie: UInt64, requestOffset: UInt64) -> [UInt8] {
        (try? chunkHeader(flags: .done, type: .none, cookie: cookie, requestOffset: requestOffset, payloadLength: 0))
            ?? SimpleReplyHeader(error: .success, cookie: cookie).bytes
    }

    /// A failed request: simple reply with the errno, or an ERROR chunk (DONE) carrying a short
    /// message (cut to 255 bytes: peers reject long non-data chunks).
    public func error(cookie: UInt64, requestOffset: UInt64, error: NBDErrno, message: String = "") -> [UInt8] {
        let code = error == .success ? NBDErrno.EIO : error
        guard form != .simple else { return SimpleReplyHeader(error: code, cookie: cookie).bytes }
        return errorChunk(cookie: cookie, requestOffset: requestOffset, payload: ErrorChunkPayload(error: code, message: message), done: true)
    }

    /// An ERROR or ERROR_OFFSET chunk (structured/extended only; simple mode gets a simple error reply).
    public func errorChunk(cookie: UInt64, requestOffset: UInt64, payload: ErrorChunkPayload, done: Bool) -> [UInt8] {
        var safe = payload
        if safe.error == .success { safe.error = .EIO }
        safe.message = NBDString.truncatedMessage(safe.message.replacingNUL())
        guard form != .simple, let body = try? safe.encoded(),
              let header = try? chunkHeader(flags: done ? .done : [], type: safe.chunkType, cookie: cookie,
                                            requestOffset: requestOffset, payloadLength: UInt64(body.count))
        else { return SimpleReplyHeader(error: safe.error, cookie: cookie).bytes }
        return header + body
    }

    // MARK: READ

    /// Bytes to send before `dataLength` bytes of read data at `dataOffset`: a success simple
    /// reply (simple mode: the data must then be the whole request), or an OFFSET_DATA chunk
    /// header plus its 8-byte offset.
    public func readDataPrefix(cookie: UInt64, requestOffset: UInt64, dataOffset: UInt64, dataLength: UInt64,
                               done: Bool) throws -> [UInt8] {
        guard form != .simple else { return SimpleReplyHeader(error: .success, cookie: cookie).bytes }
        guard dataLength > 0 else { throw NBDProtocolError(.invalidValue, "OFFSET_DATA chunk needs at least one byte") }
        let (payloadLength, overflow) = dataLength.addingReportingOverflow(UInt64(OffsetDataChunkPrefix.wireSize))
        guard !overflow else { throw NBDProtocolError(.valueOutOfRange, "data length \(dataLength) overflows") }
        return try chunkHeader(flags: done ? .done : [], type: .offsetData, cookie: cookie, requestOffset: requestOffset,
                               payloadLength: payloadLength)
            + OffsetDataChunkPrefix(offset: dataOffset).bytes
    }

    /// A complete OFFSET_HOLE chunk (structured/extended only).
    public func holeChunk(cookie: UInt64, requestOffset: UInt64, holeOffset: UInt64, holeLength: UInt32,
                          done: Bool) throws -> [UInt8] {
        guard holeLength > 0 else { throw NBDProtocolError(.invalidValue, "OFFSET_HOLE chunk needs a non-zero size") }
        return try chunkHeader(flags: done ? .done : [], type: .offsetHole, cookie: cookie, requestOffset: requestOffset,
                               payloadLength: UInt64(OffsetHoleChunkPayload.wireSize))
            + OffsetHoleChunkPayload(offset: holeOffset, holeSize: holeLength).bytes
    }

    /// The prefix (or whole chunk, for holes) of one planned read chunk.
    public func bytes(for chunk: ReadChunk, cookie: UInt64, requestOffset: UInt64, done: Bool) throws -> [UInt8] {
        switch chunk {
        case .data(let offset, let length):
            return try readDataPrefix(cookie: cookie, requestOffset: requestOffset, dataOffset: offset, dataLength: length, done: done)
        case .hole(let offset, let length):
            guard let short = UInt32(exactly: length) else {
                throw NBDProtocolError(.valueOutOfRange, "hole of \(length) bytes does not fit OFFSET_HOLE")
            }
            return try holeChunk(cookie: cookie, requestOffset: requestOffset, holeOffset: offset, holeLength: short, done: done)
        }
    }

    // MARK: BLOCK_STATUS

    /// One block-status chunk (BLOCK_STATUS in structured mode, BLOCK_STATUS_EXT in extended mode).
    public func blockStatusChunk(cookie: UInt64, requestOffset: UInt64, payload: BlockStatusChunkPayload,
                                 done: Bool) throws -> [UInt8] {
        let statusForm: BlockStatusChunkPayload.Form = form == .extended ? .extended : .compact
        let body = try payload.encoded(form: statusForm)
        return try chunkHeader(flags: done ? .done : [], type: statusForm.chunkType, cookie: cookie,
                               requestOffset: requestOffset, payloadLength: UInt64(body.count)) + body
    }
}

extension String {
    /// NBD strings may not contain NUL; error text built from device errors is cleaned here.
    func replacingNUL() -> String {
        guard utf8.contains(0) else { return self }
        return String(decoding: utf8.map { $0 == 0 ? UInt8(ascii: "?") : $0 }, as: UTF8.self)
    }
}
