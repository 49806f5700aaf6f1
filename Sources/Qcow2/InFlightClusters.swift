import Foundation

/// Guest clusters that a mutating request (write, zero, discard) is working on.
///
/// Two requests touching the same guest cluster run one after the other, so they can never
/// both allocate a host cluster for it or interleave their L2 updates. Requests on different
/// clusters proceed in parallel, and reads never wait here.
final class InFlightClusters: @unchecked Sendable {
    private let condition = NSCondition()
    private var busy = Set<UInt64>()

    /// Waits until no other request holds any cluster of `range`, then takes all of them at once
    /// (taking them one by one could deadlock two overlapping requests).
    func acquire(_ range: ClosedRange<UInt64>) {
        condition.lock()
        defer { condition.unlock() }
        while range.contains(where: { busy.contains($0) }) { condition.wait() }
        for c in range { busy.insert(c) }
    }

    func release(_ range: ClosedRange<UInt64>) {
        condition.lock()
        for c in range { busy.remove(c) }
        condition.broadcast()
        condition.unlock()
    }

    func withClusters<T>(_ range: ClosedRange<UInt64>, _ body: () throws -> T) rethrows -> T {
        acquire(range)
        defer { release(range) }
        return try body()
    }
}
