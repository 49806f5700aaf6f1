import Foundation

/// `NSLock` with a scoped `withLock` that returns a value.
final class ServerMutex: @unchecked Sendable {
    private let lock = NSLock()
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}
