/// Which parts of a structured READ have arrived, to reject chunks that overlap earlier ones
/// and to check full coverage at the end (docs/protocol.md §5.4). Ranges are relative to the
/// request offset and kept sorted and disjoint.
struct ReadCoverage {
    private(set) var ranges: [Range<UInt64>] = []
    private(set) var covered: UInt64 = 0

    /// Records `range`; returns false (and records nothing) when it overlaps what is already there.
    mutating func insert(_ range: Range<UInt64>) -> Bool {
        guard !range.isEmpty else { return false }
        // First existing range that ends after the new one starts.
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound <= range.lowerBound { low = mid + 1 } else { high = mid }
        }
        if low < ranges.count && ranges[low].lowerBound < range.upperBound { return false }
        // Merge with touching neighbours to keep the array short.
        var merged = range
        var insertAt = low
        if low < ranges.count && ranges[low].lowerBound == merged.upperBound {
            merged = merged.lowerBound..<ranges[low].upperBound
            ranges.remove(at: low)
        }
        if insertAt > 0 && ranges[insertAt - 1].upperBound == merged.lowerBound {
            merged = ranges[insertAt - 1].lowerBound..<merged.upperBound
            ranges.remove(at: insertAt - 1)
            insertAt -= 1
        }
        ranges.insert(merged, at: insertAt)
        covered += UInt64(range.count)
        return true
    }
}
