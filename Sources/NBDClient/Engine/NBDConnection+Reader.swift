#if canImport(Glibc)
import Glibc
#endif
import NBDProtocol
import NBDTLS

/// The reader thread: decodes replies, checks every length against the request it answers, and
/// completes requests. A violation throws `ReplyViolation`, which becomes a hard disconnect.
extension NBDConnection {
    struct ReplyViolation: Error {
        var message: String
        init(_ message: String) { self.message = message }
    }

    /// Largest payload of a chunk that carries no READ data: a status chunk of 2^20 extents
    /// in the extended form. Anything bigger is a hostile or broken server.
    static let maximumStatusChunk: UInt64 = 8 + 16 * (1 << 20)
    /// Error chunks: 6 bytes, a message of at most 4096 bytes, an optional 8-byte offset.
    static let maximumErrorChunk: UInt64 = 6 + 4096 + 8

    func readLoop() {
        state.withLock { readerThread = pthread_self() }
        do {
            var magicBytes = [UInt8](repeating: 0, count: 4)
            while true {
                let gotMagic = try magicBytes.withUnsafeMutableBytes { try readOrEOF($0) }
                if !gotMagic { break }
                let magic = UInt32(magicBytes[0]) << 24 | UInt32(magicBytes[1]) << 16 | UInt32(magicBytes[2]) << 8 | UInt32(magicBytes[3])
                switch magic {
                case NBDMagic.simpleReply:
                    if export.replyMode == .extended { throw ReplyViolation("simple reply although extended headers were negotiated") }
                    let header = try SimpleReplyHeader(decoding: magicBytes + stream.readExactly(count: SimpleReplyHeader.wireSize - 4))
                    try handleSimpleReply(header)
                case NBDMagic.structuredReply:
                    guard export.replyMode == .structured else {
                        throw ReplyViolation("structured reply chunk although \(export.replyMode) replies were negotiated")
                    }
                    let h = try StructuredChunkHeader(decoding: magicBytes + stream.readExactly(count: StructuredChunkHeader.wireSize - 4))
                    try handleChunk(flags: h.flags, type: h.type, cookie: h.cookie, length: UInt64(h.length))
                case NBDMagic.extendedReply:
                    guard export.replyMode == .extended else {
                        throw ReplyViolation("extended reply chunk although \(export.replyMode) replies were negotiated")
                    }
                    let h = try ExtendedChunkHeader(decoding: magicBytes + stream.readExactly(count: ExtendedChunkHeader.wireSize - 4))
                    try handleChunk(flags: h.flags, type: h.type, cookie: h.cookie, length: h.length)
                default:
                    throw ReplyViolation("unknown reply magic 0x\(String(magic, radix: 16))")
                }
            }
            finishReader(nil)
        } catch let violation as ReplyViolation {
            finishReader(NBDClientError(.protocolViolation, "server broke the NBD protocol: \(violation.message); connection dropped"))
        } catch let error as NBDProtocolError {
            finishReader(NBDClientError(.protocolViolation, "server broke the NBD protocol: \(error.message); connection dropped"))
        } catch let error as StreamError {
            finishReader(NBDClientError(.disconnected, "connection lost: \(error.message)"))
        } catch let error as NBDClientError {
            finishReader(error) // e.g. a TLS failure reported by the TLS stream

        } catch {
            finishReader(NBDClientError(.disconnected, "connection lost: \(error)"))
        }
    }

    /// Fills `buffer`; returns false on a clean end of stream before the first byte.
    func readOrEOF(_ buffer: UnsafeMutableRawBufferPointer) throws -> Bool {
        let first = try stream.read(into: buffer)
        if first == 0 { return false }
        if first < buffer.count {
            try stream.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[first...]))
        }
        return true
    }

    func finishReader(_ error: NBDClientError?) {
        let isClosing = state.withLock { closing }
        if let error {
            // After DISC, a lost connection is the expected end (libnbd does the same).
            disconnect(isClosing ? NBDClientError(.disconnected, "connection closed") : error, fromReader: true)
        } else {
            disconnect(NBDClientError(.disconnected, isClosing ? "connection closed" : "server closed the connection"), fromReader: true)
        }
        releaseDescriptor()
        state.withLock {
            readerFinished = true
            state.broadcast()
        }
    }

    func lookup(_ cookie: UInt64) throws -> PendingRequest {
        guard let request = state.withLock({ pending[cookie] }) else {
            throw ReplyViolation("reply to cookie \(cookie), which is not in flight")
        }
        return request
    }

    func complete(_ cookie: UInt64, _ result: Result<CommandReply, NBDClientError>) {
        let request: PendingRequest? = state.withLock {
            let r = pending.removeValue(forKey: cookie)
            state.broadcast()
            return r
        }
        request?.completion(result)
    }

    // MARK: - Simple replies

    func handleSimpleReply(_ header: SimpleReplyHeader) throws {
        let request = try lookup(header.cookie)
        if request.command == .read && export.replyMode != .simple {
            throw ReplyViolation("simple reply to READ although structured replies were negotiated")
        }
        if request.command == .blockStatus {
            // Only an error may come as a simple reply to BLOCK_STATUS.
            guard header.error != .success else { throw ReplyViolation("simple success reply to BLOCK_STATUS") }
        }
        if header.error != .success {
            request.serverError = (header.error, nil)
            complete(header.cookie, .failure(request.failure!))
            return
        }
        if request.command == .read, let destination = request.destination, destination.count > 0 {
            try stream.readExactly(into: destination)
        }
        complete(header.cookie, .success(.done))
    }

    // MARK: - Structured and extended chunks

    func handleChunk(flags: ReplyFlags, type: NBDChunkType, cookie: UInt64, length: UInt64) throws {
        let request = try lookup(cookie)
        switch type {
        case .none:
            guard length == 0 else { throw ReplyViolation("NONE chunk with \(length) bytes of payload") }
            guard flags.contains(.done) else { throw ReplyViolation("NONE chunk without the DONE flag") }
        case .offsetData:
            try readOffsetData(request, length: length)
        case .offsetHole:
            try readOffsetHole(request, length: length)
        case .blockStatus, .blockStatusExtended:
            try readBlockStatus(request, type: type, length: length)
        default:
            if type.isError {
                try readErrorChunk(request, type: type, length: length)
            } else {
                throw ReplyViolation("unknown chunk type \(type) for \(request.command)")
            }
        }
        if flags.contains(.done) { finishChunkedReply(request, cookie: cookie) }
    }

    func finishChunkedReply(_ request: PendingRequest, cookie: UInt64) {
        if let failure = request.failure {
            complete(cookie, .failure(failure))
            return
        }
        switch request.command {
        case .read:
            guard request.coverage.covered == request.length else {
                let error = NBDClientError(.protocolViolation,
                    "server broke the NBD protocol: READ of \(request.length) bytes at \(request.offset) succeeded with only \(request.coverage.covered) bytes; connection dropped")
                // Drop first, so the failing request already sees a dead connection.
                disconnect(error, fromReader: true)
                return
            }
            complete(cookie, .success(.done))
        case .blockStatus:
            guard !request.statuses.isEmpty else {
                complete(cookie, .failure(NBDClientError(.protocolViolation, "BLOCK_STATUS succeeded without any status chunk")))
                return
            }
            complete(cookie, .success(.blockStatus(BlockStatusReply(extentsByContext: request.statuses))))
        default:
            complete(cookie, .success(.done))
        }
    }

    /// Checks that `[start, start+count)` lies in the request and overlaps nothing seen before;
    /// returns its position relative to the request offset.
    func claim(_ request: PendingRequest, start: UInt64, count: UInt64, what: String) throws -> Range<UInt64> {
        guard count > 0 else { throw ReplyViolation("\(what) of zero bytes") }
        guard start >= request.offset else { throw ReplyViolation("\(what) at \(start) starts before the request at \(request.offset)") }
        let relative = start - request.offset
        guard relative <= request.length, count <= request.length - relative else {
            throw ReplyViolation("\(what) \(start)+\(count) ends past the request \(request.offset)+\(request.length)")
        }
        let range = relative..<(relative + count)
        guard request.coverage.insert(range) else { throw ReplyViolation("\(what) at \(start) overlaps earlier data") }
        return range
    }

    func readOffsetData(_ request: PendingRequest, length: UInt64) throws {
        guard request.command == .read, let destination = request.destination else {
            throw ReplyViolation("OFFSET_DATA chunk in reply to \(request.command)")
        }
        guard length > 8 else { throw ReplyViolation("OFFSET_DATA chunk of \(length) bytes (needs an offset and data)") }
        guard length - 8 <= request.length else {
            throw ReplyViolation("OFFSET_DATA chunk of \(length) bytes for a READ of \(request.length)")
        }
        let start = try readU64()
        let range = try claim(request, start: start, count: length - 8, what: "OFFSET_DATA")
        try stream.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: destination[Int(range.lowerBound)..<Int(range.upperBound)]))
    }

    func readOffsetHole(_ request: PendingRequest, length: UInt64) throws {
        guard request.command == .read, let destination = request.destination else {
            throw ReplyViolation("OFFSET_HOLE chunk in reply to \(request.command)")
        }
        guard length == 12 else { throw ReplyViolation("OFFSET_HOLE chunk of \(length) bytes (must be 12)") }
        let hole = try OffsetHoleChunkPayload(decoding: try stream.readExactly(count: OffsetHoleChunkPayload.wireSize))
        let (start, size) = (hole.offset, hole.holeSize)
        let range = try claim(request, start: start, count: UInt64(size), what: "OFFSET_HOLE")
        UnsafeMutableRawBufferPointer(rebasing: destination[Int(range.lowerBound)..<Int(range.upperBound)]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    func readBlockStatus(_ request: PendingRequest, type: NBDChunkType, length: UInt64) throws {
        guard request.command == .blockStatus else { throw ReplyViolation("status chunk in reply to \(request.command)") }
        let extended = type == .blockStatusExtended
        guard extended == (export.replyMode == .extended) else {
            throw ReplyViolation("\(type) chunk in \(export.replyMode) mode")
        }
        let fixed: UInt64 = extended ? 8 : 4
        let entry: UInt64 = extended ? 16 : 8
        guard length <= Self.maximumStatusChunk else { throw ReplyViolation("status chunk of \(length) bytes") }
        guard length >= fixed + entry, (length - fixed) % entry == 0 else {
            throw ReplyViolation("\(type) chunk of \(length) bytes is not \(fixed) + \(entry)·n with n ≥ 1")
        }
        let payload = try BlockStatusChunkPayload(decoding: try stream.readExactly(count: Int(length)),
                                                  form: extended ? .extended : .compact)
        let context = payload.contextID
        guard export.metaContexts.contains(where: { $0.id == context }) else {
            throw ReplyViolation("status chunk for context \(context), which was never negotiated")
        }
        guard request.statuses[context] == nil else { throw ReplyViolation("two status chunks for context \(context)") }
        let extents = payload.extents
        request.statuses[context] = extents
    }

    func readErrorChunk(_ request: PendingRequest, type: NBDChunkType, length: UInt64) throws {
        guard length >= 6, length <= Self.maximumErrorChunk else {
            throw ReplyViolation("\(type) chunk of \(length) bytes")
        }
        let chunk = try ErrorChunkPayload(decoding: try stream.readExactly(count: Int(length)), type: type)
        if let offset = chunk.offset {
            guard offset >= request.offset, offset - request.offset < max(request.length, 1) else {
                throw ReplyViolation("ERROR_OFFSET \(offset) lies outside the request")
            }
        }
        let (value, message) = (chunk.error, chunk.message)
        if request.serverError == nil {
            // Unknown error types count as a failed request with the given errno (EINVAL if unknown).
            request.serverError = (value, message.isEmpty ? nil : message)
        }
    }

    func readU64() throws -> UInt64 {
        var reader = ByteReader(try stream.readExactly(count: 8))
        return try reader.readU64()
    }
}
