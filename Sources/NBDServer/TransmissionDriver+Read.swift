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

        guard builder.form != .simple else {
            try device.read(into: buffer, at: offset)
            let header = try builder.readDataPrefix(cookie: request.cookie, requestOffset: offset, dataOffset: offset,
                                                    dataLength: UInt64(length), done: true)
            header.withUnsafeBytes { sender.send([$0, UnsafeRawBufferPointer(buffer)]) }
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

        // Chunk headers (and whole hole chunks) go into one array; then header, data,
        // header, data… leave in one send.
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
