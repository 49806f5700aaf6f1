import NBDClient

/// What a copy moved, for reports (`backup`) and benchmarks: bytes read from the source,
/// bytes written as data, bytes zeroed (requests or metadata, or nothing when the destination
/// already read as zero), and bytes skipped as clean in a dirty bitmap. Thread-safe.
final class CopyStatistics: @unchecked Sendable {
    private let lock = ConditionLock()
    private var read: UInt64 = 0
    private var written: UInt64 = 0
    private var zeroed: UInt64 = 0
    private var skipped: UInt64 = 0

    func addRead(_ n: UInt64) { lock.withLock { read += n } }
    func addWritten(_ n: UInt64) { lock.withLock { written += n } }
    func addZeroed(_ n: UInt64) { lock.withLock { zeroed += n } }
    func addSkipped(_ n: UInt64) { lock.withLock { skipped += n } }

    var bytesRead: UInt64 { lock.withLock { read } }
    var bytesWritten: UInt64 { lock.withLock { written } }
    var bytesZeroed: UInt64 { lock.withLock { zeroed } }
    var bytesSkipped: UInt64 { lock.withLock { skipped } }
}
