import BlockDevices
import NBDClient

/// Copies from an NBD source through the client's pipelined (callback) API: one dispatcher
/// thread keeps up to `--requests` READs in flight per connection, the connection's reader thread
/// hands each finished buffer to a small pool of writer threads, and buffers are reused.
/// Zero runs and all-zero pieces are skipped or zeroed, as in `BlockCopier`. The first error of
/// any request (read, write or zero) stops the copy and is reported (CVE-2022-0485).
final class PipelinedCopier: @unchecked Sendable {
    let source: RemoteExport
    let destination: any BlockDevice
    let destinationIsZero: Bool
    let requestSize: Int
    let writers: Int
    let sparse: Bool
    let progress: CopyProgress
    let statistics: CopyStatistics
    var pageCache: PageCacheDropper?

    private let planner: CopyPlanner
    private let lock = ConditionLock()
    /// Indices into `allBuffers` (indices, not pointers, cross threads).
    private var freeBuffers: [Int]
    private let allBuffers: [UnsafeMutableRawBufferPointer]
    private var queue: [Item] = []
    private var queueHead = 0
    private var dispatching = true
    private var firstError: Error?
    private var runningWriters = 0

    private enum Item {
        case data(offset: UInt64, length: Int, buffer: Int, failure: NBDClientError?)
        case zero(offset: UInt64, length: UInt64)
    }

    /// Total memory for read buffers; more only queues data behind the writers.
    static let bufferBudget = 64 << 20

    init(source: RemoteExport, destination: any BlockDevice, destinationIsZero: Bool, size: UInt64,
         requestSize: Int, requestsPerConnection: Int, writers: Int, sparse: Bool, progress: CopyProgress,
         statistics: CopyStatistics = CopyStatistics(), extentMap: CopyExtentMap? = nil) {
        self.source = source
        self.destination = destination
        self.destinationIsZero = destinationIsZero
        self.requestSize = requestSize
        self.writers = max(1, writers)
        self.sparse = sparse
        self.progress = progress
        self.statistics = statistics
        planner = CopyPlanner(source: source, size: size, requestSize: requestSize, sparse: sparse, extentMap: extentMap) {
            statistics.addSkipped($0)
            progress.add($0)
        }
        let wanted = source.connections.count * max(1, requestsPerConnection)
        let count = max(2, min(wanted, Self.bufferBudget / max(requestSize, 1)))
        allBuffers = (0..<count).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: requestSize, alignment: 4096) }
        freeBuffers = Array(allBuffers.indices)
    }

    deinit { allBuffers.forEach { $0.deallocate() } }

    func run() throws {
        lock.withLock { runningWriters = writers }
        for _ in 0..<writers {
            try spawnThread { [self] in
                writeLoop()
                lock.withLock { runningWriters -= 1; lock.broadcast() }
            }
        }
        dispatch()
        try lock.withLock {
            dispatching = false
            lock.broadcast()
            // Every buffer back and every writer gone: nothing is in flight any more.
            while runningWriters > 0 || freeBuffers.count < allBuffers.count { lock.wait() }
            if let firstError { throw firstError }
        }
    }

    /// Issues READs while buffers are free and work remains.
    private func dispatch() {
        while true {
            let buffer: Int? = lock.withLock {
                while freeBuffers.isEmpty && firstError == nil { lock.wait() }
                return firstError == nil ? freeBuffers.removeLast() : nil
            }
            guard let buffer else { return }
            let work: CopyPlanner.Work?
            do { work = try planner.next() } catch {
                release(buffer, error: error)
                return
            }
            switch work {
            case nil:
                release(buffer, error: nil)
                return
            case .zero(let offset, let length):
                release(buffer, error: nil)
                enqueue(.zero(offset: offset, length: length))
            case .data(let offset, let length):
                let target = UnsafeMutableRawBufferPointer(rebasing: allBuffers[buffer][0..<length])
                source.connection().submitRead(into: target, at: offset) { [self] result in
                    // Runs on the reader thread: only queue the buffer, never block here.
                    let failure: NBDClientError? = if case .failure(let e) = result { e } else { nil }
                    enqueue(.data(offset: offset, length: length, buffer: buffer, failure: failure))
                }
            }
        }
    }

    private func enqueue(_ item: Item) {
        lock.withLock {
            queue.append(item)
            lock.broadcast()
        }
    }

    private func release(_ buffer: Int, error: Error?) {
        lock.withLock {
            freeBuffers.append(buffer)
            if let error, firstError == nil { firstError = error }
            lock.broadcast()
        }
    }

    private func fail(_ error: Error) {
        lock.withLock {
            if firstError == nil { firstError = error }
            lock.broadcast()
        }
    }

    /// Takes finished reads and zero runs off the queue; ends when dispatch is over and the
    /// queue is empty with every buffer home.
    private func writeLoop() {
        var previous: (offset: UInt64, length: UInt64)?
        while true {
            let item: Item? = lock.withLock {
                while queueHead == queue.count {
                    if !dispatching && freeBuffers.count == allBuffers.count { return nil }
                    lock.wait()
                }
                let next = queue[queueHead]
                queueHead += 1
                if queueHead > 1024 && queueHead * 2 > queue.count {
                    queue.removeFirst(queueHead)
                    queueHead = 0
                }
                return next
            }
            guard let item else { return }
            switch item {
            case .zero(let offset, let length):
                if lock.withLock({ firstError != nil }) { continue }
                do {
                    if !destinationIsZero {
                        try destination.writeZeroes(offset: offset, length: length, mayTrim: true, fastOnly: false, fua: false)
                    }
                    statistics.addZeroed(length)
                    progress.add(length)
                } catch { fail(error) }
            case .data(let offset, let length, let buffer, let failure):
                if let failure {
                    release(buffer, error: failure)
                    continue
                }
                if lock.withLock({ firstError != nil }) {
                    release(buffer, error: nil)
                    continue
                }
                let piece = UnsafeRawBufferPointer(rebasing: allBuffers[buffer][0..<length])
                statistics.addRead(UInt64(length))
                do {
                    if sparse && BlockCopier.isAllZero(piece) {
                        if !destinationIsZero {
                            try destination.writeZeroes(offset: offset, length: UInt64(length), mayTrim: true, fastOnly: false, fua: false)
                        }
                        statistics.addZeroed(UInt64(length))
                    } else {
                        try destination.write(piece, at: offset, fua: false)
                        statistics.addWritten(UInt64(length))
                        if let pageCache {
                            pageCache.written((offset, UInt64(length)), previous: previous)
                            previous = (offset, UInt64(length))
                        }
                    }
                    progress.add(UInt64(length))
                    release(buffer, error: nil)
                } catch {
                    release(buffer, error: error)
                }
            }
        }
    }
}
