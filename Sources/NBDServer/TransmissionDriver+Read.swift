import BlockDevices
import NBDProtocol

extension TransmissionDriver {
    /// Holes shorter than this are read and sent as data: a chunk header costs more than
    /// the zeroes it would save.
    static let smallestHoleChunk: UInt64 = 4096

    /// READ: `pread` straight into the worker's buffer, then one send of the whole reply.
    /// Structured replies describe holes with OFFSET_HOLE chunks unless the client set DF.
    func sendRead(_ request: NBDRequest, worker: WorkerContext) throws {
        let length = Int(request.length)
        let buffer = worker.buffer(count: length)
        defer { if length > (4 << 20) { worker.trim() } }
        let device = context.device
        let offset = request.offset

        guard context.framing != .simple else {
            try device.read(into: buffer, at: offset)
            let header = SimpleReplyHeader(error: .success, cookie: request.cookie).bytes
            header.withUnsafeBytes { sender.send([$0, UnsafeRawBufferPointer(buffer)]) }
            return
        }
        if length == 0 {
            sendSuccessChunk(request)
            return
        }

        // Content pieces: (start within request, length, is hole).
        var pieces: [(start: Int, count: Int, hole: Bool)] = []
        if !request.flags.contains(.dontFragment) && device.capabilities.contains(.extents) {
            var position: UInt64 = 0
            var rounds = 0
            while position < UInt64(length) && rounds < 4096 {
                rounds += 1
                let extents = try device.extents(offset: offset + position, length: UInt64(length) - position)
                if extents.isEmpty { break }
                for extent in extents where extent.length > 0 && position < UInt64(length) {
                    let count = min(extent.length, UInt64(length) - position)
                    let hole = extent.flags.contains(.zero) && count >= Self.smallestHoleChunk
                    if let last = pieces.last, last.hole == hole {
                        pieces[pieces.count - 1].count += Int(count)
                    } else {
                        pieces.append((Int(position), Int(count), hole))
                    }
                    position += count
                }
            }
            if position < UInt64(length) {
                pieces.append((Int(position), length - Int(position), false))
            }
        } else {
            pieces = [(0, length, false)]
        }
        for piece in pieces where !piece.hole {
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[piece.start..<(piece.start + piece.count)])
            try device.read(into: slice, at: offset + UInt64(piece.start))
        }

        // Headers and payload prefixes are small: build them into one array, then send
        // header, data, header, data… in one call.
        var headerBytes: [UInt8] = []
        var headerRanges: [Range<Int>] = []
        headerBytes.reserveCapacity(pieces.count * 32)
        for (index, piece) in pieces.enumerated() {
            let flags: ReplyFlags = index == pieces.count - 1 ? .done : []
            let pieceOffset = offset + UInt64(piece.start)
            let start = headerBytes.count
            if piece.hole {
                let payload = OffsetHoleChunkPayload(offset: pieceOffset, holeSize: UInt32(piece.count)).bytes
                headerBytes += sender.chunkHeader(flags: flags, type: .offsetHole, cookie: request.cookie,
                                                  requestOffset: offset, length: payload.count)
                headerBytes += payload
            } else {
                let prefix = OffsetDataChunkPrefix(offset: pieceOffset).bytes
                headerBytes += sender.chunkHeader(flags: flags, type: .offsetData, cookie: request.cookie,
                                                  requestOffset: offset, length: prefix.count + piece.count)
                headerBytes += prefix
            }
            headerRanges.append(start..<headerBytes.count)
        }
        headerBytes.withUnsafeBytes { headers in
            var parts: [UnsafeRawBufferPointer] = []
            parts.reserveCapacity(pieces.count * 2)
            for (index, piece) in pieces.enumerated() {
                parts.append(UnsafeRawBufferPointer(rebasing: headers[headerRanges[index]]))
                if !piece.hole {
                    parts.append(UnsafeRawBufferPointer(rebasing: buffer[piece.start..<(piece.start + piece.count)]))
                }
            }
            sender.send(parts)
        }
    }

    /// BLOCK_STATUS: one status chunk per selected context, all in one send.
    func sendBlockStatus(_ request: NBDRequest) throws {
        let device = context.device
        let requestOne = request.flags.contains(.requestOne)
        var payloads: [[UInt8]] = []
        let form: BlockStatusChunkPayload.Form = context.framing == .extended ? .extended : .compact
        if let id = context.baseAllocationContextID {
            let extents: [Extent] = device.capabilities.contains(.extents)
                ? try device.extents(offset: request.offset, length: request.length)
                : [Extent(length: request.length, flags: [])]
            let status = clamp(extents.map { ($0.length, UInt64($0.flags.rawValue)) }, to: request.length, one: requestOne)
            payloads.append(try BlockStatusChunkPayload(contextID: id, extents: status).encoded(form: form))
        }
        if let id = context.allocationDepthContextID {
            let depths = try device.allocationDepth(offset: request.offset, length: request.length)
                ?? [DepthExtent(length: request.length, depth: 1)]
            let status = clamp(depths.map { ($0.length, UInt64($0.depth)) }, to: request.length, one: requestOne)
            payloads.append(try BlockStatusChunkPayload(contextID: id, extents: status).encoded(form: form))
        }
        var reply: [UInt8] = []
        for (index, payload) in payloads.enumerated() {
            reply += sender.chunkHeader(flags: index == payloads.count - 1 ? .done : [], type: form.chunkType,
                                        cookie: request.cookie, requestOffset: request.offset, length: payload.count)
            reply += payload
        }
        sender.send(reply)
    }

    /// Extents limited to the request (never past its end, exactly one with REQ_ONE),
    /// adjacent equal statuses merged, at least one extent.
    private func clamp(_ runs: [(UInt64, UInt64)], to length: UInt64, one: Bool) -> [BlockStatusExtent] {
        var result: [BlockStatusExtent] = []
        var covered: UInt64 = 0
        for (runLength, flags) in runs where runLength > 0 && covered < length {
            let count = min(runLength, length - covered)
            if let last = result.last, last.flags == flags {
                result[result.count - 1].length += count
            } else {
                result.append(BlockStatusExtent(length: count, flags: flags))
            }
            covered += count
            if one { break }
        }
        if result.isEmpty { result = [BlockStatusExtent(length: length, flags: 0)] }
        if one { result = [result[0]] }
        // Compact descriptors are 32-bit; a request's length always fits, merged runs too.
        return result
    }

    private func sendSuccessChunk(_ request: NBDRequest) {
        let header = sender.chunkHeader(flags: .done, type: .none, cookie: request.cookie, requestOffset: request.offset, length: 0)
        sender.send(header)
    }

}
