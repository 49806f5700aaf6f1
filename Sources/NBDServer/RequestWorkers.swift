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
    /// One mutex, and a condition per kind of waiter, so each event wakes exactly the
    /// thread that can act on it (a broadcast per request woke every idle worker and the
    /// reader, costing several context switches per 4 KiB request).
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Workers wait here for a job (or `finishing`).
    private let jobReady: UnsafeMutablePointer<pthread_cond_t>
    /// The reader (`submit`) and `finish`/`waitUntilIdle` wait here for in-flight jobs to end.
    private let jobDone: UnsafeMutablePointer<pthread_cond_t>
    private var queue: [Job] = []
    private var queueHead = 0
    private var inFlight = 0
    private var threads = 0
    private var idleThreads = 0
    /// Signals sent to idle workers that have not woken yet.
    private var pendingWakeups = 0
    private var finishing = false
    /// Threads waiting on `jobDone`.
    private var doneWaiters = 0

    init(maxThreads: Int, inFlightLimit: Int, name: String) {
        self.maxThreads = max(1, maxThreads)
        self.inFlightLimit = max(1, inFlightLimit)
        self.name = name
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        jobReady = .allocate(capacity: 1)
        jobReady.initialize(to: pthread_cond_t())
        pthread_cond_init(jobReady, nil)
        jobDone = .allocate(capacity: 1)
        jobDone.initialize(to: pthread_cond_t())
        pthread_cond_init(jobDone, nil)
    }

    deinit {
        pthread_cond_destroy(jobReady)
        pthread_cond_destroy(jobDone)
        pthread_mutex_destroy(mutex)
        jobReady.deallocate()
        jobDone.deallocate()
        mutex.deallocate()
    }

    /// Queues a job, waiting while the in-flight limit is reached.
    func submit(_ job: @escaping Job) {
        pthread_mutex_lock(mutex)
        while inFlight >= inFlightLimit { waitForDone() }
        inFlight += 1
        queue.append(job)
        // Idle workers not yet claimed by an earlier signal: one is enough per job; without
        // one, another thread (up to the limit) takes the job while the others are busy.
        let available = idleThreads - pendingWakeups
        if available > 0 {
            pendingWakeups += 1
            pthread_cond_signal(jobReady)
        }
        let startThread = available <= 0 && threads < maxThreads
        if startThread { threads += 1 }
        pthread_mutex_unlock(mutex)
        if startThread {
            let thread = Thread { [self] in work() }
            thread.name = name
            // Jobs are shallow (a device call and a send); keep idle connections small.
            thread.stackSize = 256 << 10
            thread.start()
        }
    }

    /// Waits until every submitted job has finished.
    func waitUntilIdle() {
        pthread_mutex_lock(mutex)
        while inFlight > 0 { waitForDone() }
        pthread_mutex_unlock(mutex)
    }

    /// Waits for outstanding jobs, then lets the threads end.
    func finish() {
        pthread_mutex_lock(mutex)
        while inFlight > 0 { waitForDone() }
        finishing = true
        pthread_cond_broadcast(jobReady)
        pthread_mutex_unlock(mutex)
    }

    var jobsInFlight: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return inFlight
    }

    /// Called with the mutex held.
    private func waitForDone() {
        doneWaiters += 1
        pthread_cond_wait(jobDone, mutex)
        doneWaiters -= 1
    }

    private func work() {
        let context = WorkerContext()
        pthread_mutex_lock(mutex)
        while true {
            while queueHead == queue.count && !finishing {
                idleThreads += 1
                pthread_cond_wait(jobReady, mutex)
                idleThreads -= 1
                if pendingWakeups > 0 { pendingWakeups -= 1 }
            }
            if queueHead == queue.count && finishing { break }
            let job = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            } else if queueHead > 64 && queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            pthread_mutex_unlock(mutex)
            job(context)
            pthread_mutex_lock(mutex)
            inFlight -= 1
            // Only the reader (at the limit) or a finishing/idle waiter cares.
            if doneWaiters > 0 { pthread_cond_broadcast(jobDone) }
        }
        threads -= 1
        pthread_mutex_unlock(mutex)
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
