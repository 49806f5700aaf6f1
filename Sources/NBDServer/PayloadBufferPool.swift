/// Reusable buffers for WRITE payloads, so a busy connection does not allocate per request.
/// Buffers up to `keepLimit` bytes are kept for reuse; larger ones are freed after use.
final class PayloadBufferPool: @unchecked Sendable {
    private let lock = ServerMutex()
    private var free: [UnsafeMutableRawBufferPointer] = []
    private let keepLimit: Int
    private let keepCount: Int

    init(keepLimit: Int = 1 << 20, keepCount: Int = 32) {
        self.keepLimit = keepLimit
        self.keepCount = keepCount
    }

    deinit { for buffer in free { buffer.deallocate() } }

    /// A buffer of exactly `count` bytes (a slice of a possibly larger allocation).
    func take(count: Int) -> PooledBuffer {
        let allocation: UnsafeMutableRawBufferPointer = lock.withLock {
            if let index = free.firstIndex(where: { $0.count >= count }) { return free.remove(at: index) }
            return .allocate(byteCount: max(count, 64 << 10).roundedUpToPowerOfTwo, alignment: 4096)
        }
        return PooledBuffer(allocation: allocation, count: count)
    }

    func give(_ buffer: PooledBuffer) {
        let allocation = buffer.allocation
        let keep: Bool = lock.withLock {
            guard allocation.count <= keepLimit, free.count < keepCount else { return false }
            free.append(allocation)
            return true
        }
        if !keep { allocation.deallocate() }
    }
}

/// A payload buffer on loan from a `PayloadBufferPool`.
struct PooledBuffer: @unchecked Sendable {
    let allocation: UnsafeMutableRawBufferPointer
    let count: Int
    var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: allocation[0..<count]) }
}
