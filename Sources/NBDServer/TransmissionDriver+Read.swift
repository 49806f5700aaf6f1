import BlockDevices
import NBDProtocol

extension TransmissionDriver {
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
        let extents = dontFragment || !device.capabilities.contains(.extents)
            ? [] : try allocationExtents(offset: offset, length: request.length)
        let chunks = ReadReplyPlanner.plan(offset: offset, length: request.length, extents: extents, dontFragment: dontFragment)
        for case let .data(chunkOffset, chunkLength) in chunks {
            let start = Int(chunkOffset - offset)
            try device.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[start..<start + Int(chunkLength)]), at: chunkOffset)
        }
        try sendChunks(chunks, for: request, buffer: buffer)
    }

    /// Up to this size a structured READ reads first and asks the device about holes only
    /// when the data came back all zeroes: a 4 KiB read then costs one `pread`, not also a
    /// `SEEK_DATA`/`SEEK_HOLE` pair (which takes the inode lock, contending with writers).
    static let smallReadLimit = 128 << 10

    /// Replies to a READ whose whole range is already in `buffer`. Non-zero data goes out as
    /// one data chunk; an all-zero range is described with holes exactly as a larger read
    /// would be.
    func sendFilledRead(_ request: NBDRequest, buffer: UnsafeMutableRawBufferPointer) throws {
        let builder = sender.builder
        let offset = request.offset
        let dontFragment = request.flags.contains(.dontFragment)
        if builder.form != .simple && !dontFragment && context.device.capabilities.contains(.extents)
            && UnsafeRawBufferPointer(buffer).isAllZero {
            let extents = try allocationExtents(offset: offset, length: request.length)
            let chunks = ReadReplyPlanner.plan(offset: offset, length: request.length, extents: extents, dontFragment: false)
            try sendChunks(chunks, for: request, buffer: buffer)
            return
        }
        let header = try builder.readDataPrefix(cookie: request.cookie, requestOffset: offset, dataOffset: offset,
                                                dataLength: request.length, done: true)
        header.withUnsafeBytes { sender.send([$0, UnsafeRawBufferPointer(buffer)]) }
    }

    /// Sends planned chunks whose data ranges are filled in `buffer` (indexed from the
    /// request's offset): header, data, header, data… in one send.
    private func sendChunks(_ chunks: [ReadChunk], for request: NBDRequest, buffer: UnsafeMutableRawBufferPointer) throws {
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

extension UnsafeRawBufferPointer {
    /// True when every byte is zero (word-at-a-time, stopping at the first non-zero block).
    var isAllZero: Bool {
        guard let base = baseAddress else { return true }
        var index = 0
        let words = count / 8
        if Int(bitPattern: base) % 8 == 0 {
            func word(_ i: Int) -> UInt64 { base.load(fromByteOffset: i &* 8, as: UInt64.self) }
            while index + 8 <= words {
                let block = word(index) | word(index + 1) | word(index + 2) | word(index + 3)
                    | word(index + 4) | word(index + 5) | word(index + 6) | word(index + 7)
                if block != 0 { return false }
                index += 8
            }
            while index < words {
                if word(index) != 0 { return false }
                index += 1
            }
            index *= 8
        }
        while index < count {
            if self[index] != 0 { return false }
            index += 1
        }
        return true
    }
}
