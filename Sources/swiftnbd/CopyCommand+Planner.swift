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
    private let lock = ConditionLock()
    private var cursor: UInt64 = 0
    private var window: [Extent] = []

    init(source: any BlockDevice, size: UInt64, requestSize: Int, sparse: Bool) {
        self.source = source
        self.size = size
        self.requestSize = requestSize
        self.sparse = sparse
    }

    /// The next piece of work, or nil when everything was handed out.
    func next() throws -> Work? {
        try lock.withLock {
            if cursor >= size { return nil }
            if !sparse {
                let length = Int(min(UInt64(requestSize), size - cursor))
                defer { cursor += UInt64(length) }
                return .data(offset: cursor, length: length)
            }
            if window.isEmpty {
                let ask = min(Self.windowLength, size - cursor)
                window = try source.extents(offset: cursor, length: ask).filter { $0.length > 0 }
                if window.isEmpty { window = [Extent(length: ask, flags: [])] }
            }
            var extent = window[0]
            // Never hand out past the end even if the device reported beyond it.
            extent.length = min(extent.length, size - cursor)
            let work: Work
            if extent.flags.contains(.zero) {
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
