import Foundation

/// A connection's bounded pool of worker threads.
///
/// `submit` blocks once `inFlightLimit` jobs are queued or running, which stops the reader
/// from pulling more requests off a client that pipelines faster than storage keeps up.
/// Threads are started lazily up to `maxThreads` and end in `finish()`.
final class RequestWorkers: @unchecked Sendable {
    typealias Job = @Sendable (_ worker: WorkerContext) -> Void

    let maxThreads: Int
    let inFlightLimit: Int
    private let name: String
    private let condition = NSCondition()
    private var queue: [Job] = []
    private var queueHead = 0
    private var inFlight = 0
    private var threads = 0
    private var idleThreads = 0
    private var finishing = false

    init(maxThreads: Int, inFlightLimit: Int, name: String) {
        self.maxThreads = max(1, maxThreads)
        self.inFlightLimit = max(1, inFlightLimit)
        self.name = name
    }

    /// Queues a job, waiting while the in-flight limit is reached.
    func submit(_ job: @escaping Job) {
        condition.lock()
        while inFlight >= inFlightLimit { condition.wait() }
        inFlight += 1
        queue.append(job)
        let startThread = idleThreads == 0 && threads < maxThreads
        if startThread { threads += 1 }
        condition.broadcast()
        condition.unlock()
        if startThread {
            let thread = Thread { [self] in work() }
            thread.name = name
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Waits until every submitted job has finished.
    func waitUntilIdle() {
        condition.lock()
        while inFlight > 0 { condition.wait() }
        condition.unlock()
    }

    /// Waits for outstanding jobs, then lets the threads end.
    func finish() {
        condition.lock()
        while inFlight > 0 { condition.wait() }
        finishing = true
        condition.broadcast()
        condition.unlock()
    }

    var jobsInFlight: Int {
        condition.lock(); defer { condition.unlock() }
        return inFlight
    }

    private func work() {
        let context = WorkerContext()
        condition.lock()
        while true {
            while queueHead == queue.count && !finishing {
                idleThreads += 1
                condition.wait()
                idleThreads -= 1
            }
            if queueHead == queue.count && finishing { break }
            let job = queue[queueHead]
            queueHead += 1
            if queueHead > 64 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            condition.unlock()
            job(context)
            condition.lock()
            inFlight -= 1
            condition.broadcast()
        }
        threads -= 1
        condition.unlock()
    }
}

/// Per-worker-thread scratch state: the reusable read buffer, so a READ goes straight from
/// `pread` into the memory the reply is sent from, without a per-request allocation.
final class WorkerContext: @unchecked Sendable {
    private var buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    /// A buffer of at least `count` bytes, valid until the next call on this worker.
    func buffer(count: Int) -> UnsafeMutableRawBufferPointer {
        if buffer.count < count {
            buffer.deallocate()
            // Round up so slightly growing requests don't reallocate each time.
            let size = max(count, 64 << 10).roundedUpToPowerOfTwo
            buffer = .allocate(byteCount: size, alignment: 4096)
        }
        return UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
    }

    /// Gives large buffers back after a big request so idle connections stay small.
    func trim(keeping limit: Int = 4 << 20) {
        if buffer.count > limit {
            buffer.deallocate()
            buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        }
    }

    deinit { buffer.deallocate() }
}

extension Int {
    var roundedUpToPowerOfTwo: Int {
        guard self > 1 else { return 1 }
        return 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount)
    }
}
