import BlockDevices
import NBDProtocol

extension TransmissionDriver {
    /// Reads shorter than this skip the allocation lookup and go out as one data chunk: two
    /// `lseek` calls per small read cost more than the zeroes they might save (both replies
    /// are valid; holes matter for large sequential reads, which copy tools issue).
    static let holeDetectionThreshold: UInt64 = 64 << 10

    /// READ: `pread` straight into the worker's buffer, then one send of the whole reply.
    /// Structured replies describe zero ranges with OFFSET_HOLE chunks unless the client set
    /// DF (`ReadReplyPlanner` decides the chunks; this only fills them).
    func sendRead(_ request: NBDRequest, worker: WorkerContext) throws {
        let length = Int(request.length)
        let offset = request.offset
        let builder = sender.builder
        let device = context.device
        if length == 0 {
            sender.send(builder.noneChunk(cookie: request.cookie, requestOffset: offset))
            return
        }
        let buffer = worker.buffer(count: length)
        defer { if length > (4 << 20) { worker.trim() } }

        if builder.form == .simple || length <= Self.smallReadLimit {
            try device.read(into: buffer, at: offset)
            try sendFilledRead(request, buffer: buffer)
            return
        }

        let dontFragment = request.flags.contains(.dontFragment)
        let lookUpHoles = !dontFragment && device.capabilities.contains(.extents)
            && request.length >= Self.holeDetectionThreshold
        let extents = lookUpHoles ? try allocationExtents(offset: offset, length: request.length) : []
        let chunks = ReadReplyPlanner.plan(offset: offset, length: request.length, extents: extents, dontFragment: dontFragment)
        for case let .data(chunkOffset, chunkLength) in chunks {
            let start = Int(chunkOffset - offset)
            try device.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[start..<start + Int(chunkLength)]), at: chunkOffset)
        }
        try sendChunks(chunks, for: request, buffer: buffer)
    }

    /// Up to this size a structured READ reads first and asks the device about holes only
    /// when some sector came back all zeroes: a 4 KiB read of data then costs one `pread`,
    /// not also a `SEEK_DATA`/`SEEK_HOLE` pair (which takes the inode lock).
    static let smallReadLimit = 128 << 10

    /// Replies to a READ whose whole range is already in `buffer`: one data chunk, or, when
    /// zero sectors may be holes, the chunks the device's extents give.
    func sendFilledRead(_ request: NBDRequest, buffer: UnsafeMutableRawBufferPointer) throws {
        if let header = try plainReadHeader(request, buffer: buffer) {
            header.withUnsafeBytes { sender.send([$0, UnsafeRawBufferPointer(buffer)]) }
        } else {
            try sendChunks(try plannedChunks(request), for: request, buffer: buffer)
        }
    }

    /// The chunks of a READ (without DF) planned from the device's extents.
    func plannedChunks(_ request: NBDRequest) throws -> [ReadChunk] {
        let extents = try allocationExtents(offset: request.offset, length: request.length)
        return ReadReplyPlanner.plan(offset: request.offset, length: request.length, extents: extents, dontFragment: false)
    }

    /// The reply to a READ that is one hole from end to end: a single OFFSET_HOLE chunk.
    func wholeHoleReply(_ request: NBDRequest, chunks: [ReadChunk]) throws -> [UInt8]? {
        guard chunks.count == 1, case .hole = chunks[0] else { return nil }
        return try sender.builder.bytes(for: chunks[0], cookie: request.cookie, requestOffset: request.offset, done: true)
    }

    /// The header of a one-piece reply carrying all of `buffer`, or nil when some of the data
    /// is zeroes the device may know as holes (structured replies, no DF): those replies are
    /// planned from the device's extents exactly like larger reads.
    func plainReadHeader(_ request: NBDRequest, buffer: UnsafeMutableRawBufferPointer) throws -> [UInt8]? {
        let builder = sender.builder
        if builder.form != .simple && !request.flags.contains(.dontFragment)
            && context.device.capabilities.contains(.extents)
            && UnsafeRawBufferPointer(buffer).hasZeroSector(deviceOffset: request.offset) {
            return nil
        }
        return try builder.readDataPrefix(cookie: request.cookie, requestOffset: request.offset, dataOffset: request.offset,
                                          dataLength: request.length, done: true)
    }

    /// Sends planned chunks whose data ranges are filled in `buffer` (indexed from the
    /// request's offset): header, data, header, data… in one send.
    func sendChunks(_ chunks: [ReadChunk], for request: NBDRequest, buffer: UnsafeMutableRawBufferPointer) throws {
        let builder = sender.builder
        let offset = request.offset
        var headerBytes: [UInt8] = []
        var headerRanges: [Range<Int>] = []
        headerBytes.reserveCapacity(chunks.count * 40)
        for (index, chunk) in chunks.enumerated() {
            let start = headerBytes.count
            headerBytes += try builder.bytes(for: chunk, cookie: request.cookie, requestOffset: offset,
                                             done: index == chunks.count - 1)
            headerRanges.append(start..<headerBytes.count)
        }
        headerBytes.withUnsafeBytes { headers in
            var parts: [UnsafeRawBufferPointer] = []
            parts.reserveCapacity(chunks.count * 2)
            for (index, chunk) in chunks.enumerated() {
                parts.append(UnsafeRawBufferPointer(rebasing: headers[headerRanges[index]]))
                if case let .data(chunkOffset, chunkLength) = chunk {
                    let start = Int(chunkOffset - offset)
                    parts.append(UnsafeRawBufferPointer(rebasing: buffer[start..<start + Int(chunkLength)]))
                }
            }
            sender.send(parts)
        }
    }

    static let maximumBitmapExtents = 1 << 17

    /// BLOCK_STATUS: one status chunk per selected context, all in one send.
    func sendBlockStatus(_ request: NBDRequest) throws {
        let device = context.device
        let requestOne = request.flags.contains(.requestOne)
        let form: BlockStatusChunkPayload.Form = context.replyForm == .extended ? .extended : .compact
        var payloads: [BlockStatusChunkPayload] = []
        if let id = context.baseAllocationContextID {
            let extents = device.capabilities.contains(.extents)
                ? try allocationExtents(offset: request.offset, length: request.length, stopAfterFirst: requestOne)
                : [BlockStatusExtent(length: request.length, flags: 0)]
            payloads.append(BlockStatusReplyPlanner.payload(contextID: id, requestLength: request.length, extents: extents,
                                                            requestOne: requestOne, form: form))
        }
        if let id = context.allocationDepthContextID {
            let depths = try device.allocationDepth(offset: request.offset, length: request.length)
                ?? [DepthExtent(length: request.length, depth: 1)]
            payloads.append(BlockStatusReplyPlanner.payload(
                contextID: id, requestLength: request.length,
                extents: depths.map { BlockStatusExtent(length: $0.length, flags: UInt64($0.depth)) },
                requestOne: requestOne, form: form))
        }
        for (id, bitmap) in context.dirtyBitmapContexts {
            // QEMU's server sends at most 1 MiB of extents (131,072) for a bitmap; so do we,
            // so a client sees the same replies from both.
            let limit = requestOne ? 1 : Self.maximumBitmapExtents
            let runs = try bitmap.runs(request.offset, request.length, limit)
            payloads.append(BlockStatusReplyPlanner.payload(contextID: id, requestLength: request.length, extents: runs,
                                                            requestOne: requestOne, form: form, maximumExtents: limit))
        }
        var reply: [UInt8] = []
        for (index, payload) in payloads.enumerated() {
            reply += try sender.builder.blockStatusChunk(cookie: request.cookie, requestOffset: request.offset,
                                                         payload: payload, done: index == payloads.count - 1)
        }
        sender.send(reply)
    }

    /// The device's `base:allocation` extents from `offset`, asking again while the device
    /// answers with less than the range (bounded).
    private func allocationExtents(offset: UInt64, length: UInt64, stopAfterFirst: Bool = false) throws -> [BlockStatusExtent] {
        var result: [BlockStatusExtent] = []
        var covered: UInt64 = 0
        for _ in 0..<64 where covered < length {
            let extents = try context.device.extents(offset: offset + covered, length: length - covered)
            var progressed = false
            for extent in extents where extent.length > 0 && covered < length {
                result.append(BlockStatusExtent(length: extent.length, flags: UInt64(extent.flags.rawValue)))
                covered += extent.length
                progressed = true
            }
            if !progressed || stopAfterFirst { break }
        }
        return result
    }
}

extension UnsafeRawBufferPointer {
    /// True when some 512-byte sector of the device (sectors aligned to device offsets; the
    /// partial ones at either end included) reads as all zeroes in this buffer, which holds
    /// the data from `deviceOffset`. Holes read as zeroes, so a buffer without such a sector
    /// has no hole of sector granularity: its reply is one data chunk either way.
    func hasZeroSector(deviceOffset: UInt64) -> Bool {
        guard let base = baseAddress else { return false }
        var start = 0
        var pieceEnd = Swift.min(count, 512 - Int(deviceOffset % 512))
        while start < count {
            if Self.isZero(base + start, pieceEnd - start) { return true }
            start = pieceEnd
            pieceEnd = Swift.min(count, start + 512)
        }
        return false
    }

    private static func isZero(_ base: UnsafeRawPointer, _ count: Int) -> Bool {
        var index = 0
        while index + 8 <= count {
            if base.loadUnaligned(fromByteOffset: index, as: UInt64.self) != 0 { return false }
            index += 8
        }
        while index < count {
            if base.load(fromByteOffset: index, as: UInt8.self) != 0 { return false }
            index += 1
        }
        return true
    }
}
