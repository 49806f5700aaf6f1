/// Turns device extents into the extent list of one block-status chunk (docs/protocol.md §5.5).
///
/// - zero-length extents are dropped, adjacent extents with equal flags merged;
/// - REQ_ONE: exactly one extent, no longer than the requested length;
/// - otherwise extents up to the requested length, at most 2^20 of them (the spec's "should"),
///   the last one clipped to the request end (the spec allows running past; clipping is what
///   every client accepts);
/// - no usable extent: one extent spanning the request with status 0 (always a safe answer);
/// - compact form: flags keep their low 32 bits (32-bit contexts) and lengths fit because
///   compact requests have 32-bit lengths.
/// `requestLength` must be non-zero (the validator rejects zero-length BLOCK_STATUS).
public enum BlockStatusReplyPlanner {
    public static func payload(contextID: UInt32, requestLength: UInt64, extents: [BlockStatusExtent],
                               requestOne: Bool, form: BlockStatusChunkPayload.Form,
                               maximumExtents: Int = NBDWireLimits.maximumExtentsPerChunk) -> BlockStatusChunkPayload {
        let lengthCap = form == .compact ? min(requestLength, UInt64(UInt32.max)) : requestLength
        let limit = requestOne ? 1 : max(1, maximumExtents)
        var result: [BlockStatusExtent] = []
        var covered: UInt64 = 0
        for extent in extents where extent.length > 0 {
            let flags = form == .compact ? extent.flags & 0xffff_ffff : extent.flags
            let piece = min(extent.length, lengthCap - covered)
            if let last = result.last, last.flags == flags {
                result[result.count - 1].length += piece
            } else {
                if result.count == limit { break }
                result.append(BlockStatusExtent(length: piece, flags: flags))
            }
            covered += piece
            if covered >= lengthCap { break }
        }
        if result.isEmpty { result = [BlockStatusExtent(length: lengthCap, flags: 0)] }
        return BlockStatusChunkPayload(contextID: contextID, extents: result)
    }
}
