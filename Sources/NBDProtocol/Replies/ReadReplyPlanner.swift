/// Plans the content chunks of a structured/extended READ reply from `base:allocation` extents,
/// the way QEMU's server does: ranges known to read as zeroes (ZERO bit) become OFFSET_HOLE,
/// everything else OFFSET_DATA. The engine marks the last chunk DONE (once its data was read
/// successfully; on a read error it sends an error chunk instead).
///
/// Guarantees: chunks are consecutive, non-overlapping, non-empty, cover exactly
/// `[offset, offset + length)`, adjacent chunks of the same kind are merged, holes fit the
/// 32-bit OFFSET_HOLE size and data chunks fit `maximumDataChunk`. Extents that stop short are
/// completed with data; extents that run past the end are clipped. With `dontFragment` the whole
/// range is one OFFSET_DATA (holes are sent as zero bytes), as DF requires. A zero-length read
/// plans no chunks: answer it with `ReplyBuilder.noneChunk`.
public enum ReadReplyPlanner {
    /// Largest data run in one OFFSET_DATA chunk: a structured header's 32-bit length minus the
    /// 8-byte offset, rounded down to 512 so split chunks stay aligned.
    public static let maximumDataChunk: UInt64 = (UInt64(UInt32.max) - 8) & ~511
    /// Largest hole in one OFFSET_HOLE chunk (32-bit size), kept 512-aligned.
    public static let maximumHoleChunk: UInt64 = UInt64(UInt32.max) & ~511

    public static func plan(offset: UInt64, length: UInt64, extents: [BlockStatusExtent],
                            dontFragment: Bool) -> [ReadChunk] {
        guard length > 0 else { return [] }
        // Clamp so offset + length cannot wrap (the validator already bounded it by the export size).
        let length = min(length, UInt64.max - offset)
        if dontFragment { return [.data(offset: offset, length: length)] }

        var runs: [(isHole: Bool, length: UInt64)] = []
        var covered: UInt64 = 0
        for extent in extents where covered < length && extent.length > 0 {
            let piece = min(extent.length, length - covered)
            let isHole = AllocationStateFlags(rawValue: UInt32(truncatingIfNeeded: extent.flags)).contains(.zero)
            if let last = runs.last, last.isHole == isHole {
                runs[runs.count - 1].length += piece
            } else {
                runs.append((isHole, piece))
            }
            covered += piece
        }
        if covered < length {
            if let last = runs.last, !last.isHole {
                runs[runs.count - 1].length += length - covered
            } else {
                runs.append((false, length - covered))
            }
        }

        var chunks: [ReadChunk] = []
        var position = offset
        for run in runs {
            var remaining = run.length
            let limit = run.isHole ? maximumHoleChunk : maximumDataChunk
            while remaining > 0 {
                let piece = min(remaining, limit)
                chunks.append(run.isHole ? .hole(offset: position, length: piece) : .data(offset: position, length: piece))
                position += piece
                remaining -= piece
            }
        }
        return chunks
    }
}
