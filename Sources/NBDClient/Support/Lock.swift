#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with a condition variable. The engine uses blocking threads (docs/architecture.md §3.6),
/// so waiting on a condition is the natural primitive here.
package final class ConditionLock: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    package init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    package func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Waits (lock held by the caller inside `withLock`) until signalled.
    package func wait() { pthread_cond_wait(&condition, &mutex) }

    package func broadcast() { pthread_cond_broadcast(&condition) }
}

/// A one-shot result slot a blocking caller waits on while the reader thread fills it.
final class BlockingResult<Value: Sendable>: @unchecked Sendable {
    private let lock = ConditionLock()
    private var value: Result<Value, NBDClientError>?

    func complete(_ result: Result<Value, NBDClientError>) {
        lock.withLock {
            value = result
            lock.broadcast()
        }
    }

    func wait() -> Result<Value, NBDClientError> {
        lock.withLock {
            while value == nil { lock.wait() }
            return value!
        }
    }
}

/// Starts a detached pthread running `body`.
package func spawnThread(_ body: @escaping @Sendable () -> Void) throws {
    final class Box: @unchecked Sendable { let body: @Sendable () -> Void; init(_ b: @escaping @Sendable () -> Void) { body = b } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<Box>.fromOpaque(box).release()
        throw NBDClientError(.connectionFailed, "cannot start a thread: error \(rc)")
    }
    pthread_detach(thread)
}
