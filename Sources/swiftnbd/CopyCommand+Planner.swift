import BlockDevices
import NBDClient

/// Cuts the source into work for the copiers: zero runs and data pieces of at most
/// `requestSize` bytes, from extents fetched in large windows (one BLOCK_STATUS or SEEK_DATA
/// round per gigabyte, so extent queries never become the bottleneck). Thread-safe.
final class CopyPlanner: @unchecked Sendable {
    enum Work {
        case data(offset: UInt64, length: Int)
        case zero(offset: UInt64, length: UInt64)
    }

    /// How far one extent query looks ahead.
    static let windowLength: UInt64 = 1 << 30

    let source: any BlockDevice
    let size: UInt64
    let requestSize: Int
    let sparse: Bool
    /// Where the extents come from; `nil` means the source's own allocation map.
    let extentMap: CopyExtentMap?
    /// Told about every run that needs no copying at all (clean in a dirty bitmap), so that
    /// progress and statistics still add up to the whole disk.
    let onSkip: (UInt64) -> Void
    private let lock = ConditionLock()
    private var cursor: UInt64 = 0
    private var window: [PlannedExtent] = []

    init(source: any BlockDevice, size: UInt64, requestSize: Int, sparse: Bool,
         extentMap: CopyExtentMap? = nil, onSkip: @escaping (UInt64) -> Void = { _ in }) {
        self.source = source
        self.size = size
        self.requestSize = requestSize
        self.sparse = sparse
        self.extentMap = extentMap
        self.onSkip = onSkip
    }

    private func fetch(offset: UInt64, length: UInt64) throws -> [PlannedExtent] {
        if let extentMap { return try extentMap.extents(offset: offset, length: length) }
        return try source.extents(offset: offset, length: length).map {
            PlannedExtent(length: $0.length, kind: $0.flags.contains(.zero) ? .zero : .data)
        }
    }

    /// The next piece of work, or nil when everything was handed out.
    func next() throws -> Work? {
        try lock.withLock {
            if cursor >= size { return nil }
            if !sparse && extentMap == nil {
                let length = Int(min(UInt64(requestSize), size - cursor))
                defer { cursor += UInt64(length) }
                return .data(offset: cursor, length: length)
            }
            // Clean runs produce no work: skip them (bounded: every round advances the cursor).
            var extent: PlannedExtent
            while true {
                if window.isEmpty {
                    let ask = min(Self.windowLength, size - cursor)
                    window = try fetch(offset: cursor, length: ask).filter { $0.length > 0 }
                    if window.isEmpty { window = [PlannedExtent(length: ask, kind: .data)] }
                }
                extent = window[0]
                // Never hand out past the end even if the device reported beyond it.
                extent.length = min(extent.length, size - cursor)
                guard extent.kind == .skip else { break }
                window.removeFirst()
                cursor += extent.length
                onSkip(extent.length)
                if cursor >= size {
                    window = []
                    return nil
                }
            }
            let work: Work
            if extent.kind == .zero && sparse {
                work = .zero(offset: cursor, length: extent.length)
                window.removeFirst()
                cursor += extent.length
            } else {
                let length = Int(min(UInt64(requestSize), extent.length))
                work = .data(offset: cursor, length: length)
                cursor += UInt64(length)
                if UInt64(length) == extent.length { window.removeFirst() } else { window[0].length -= UInt64(length) }
            }
            if cursor >= size { window = [] }
            return work
        }
    }
}

/// What the planner does with one run of the source.
struct PlannedExtent: Equatable {
    enum Kind: Equatable {
        /// Read and write (an all-zero piece may still become a zero write).
        case data
        /// Reads as zero: zero the destination (or nothing when it already reads as zero).
        case zero
        /// Unchanged since the checkpoint: the destination keeps what it has.
        case skip
    }
    var length: UInt64
    var kind: Kind
}

/// A source of planned extents other than the source's allocation (a dirty bitmap).
protocol CopyExtentMap: Sendable {
    /// Extents from `offset` on, covering at most `length` bytes and at least one byte.
    func extents(offset: UInt64, length: UInt64) throws -> [PlannedExtent]
}
