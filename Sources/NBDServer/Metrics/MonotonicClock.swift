#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on the monotonic clock: a vDSO call, no allocation, no lock (the request
/// latency histograms read it twice per request).
enum MonotonicClock {
    @inline(__always)
    static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        // Wrapping arithmetic: the clock cannot overflow 64 bits of nanoseconds in practice,
        // and nothing on the request path may trap.
        return UInt64(truncatingIfNeeded: spec.tv_sec) &* 1_000_000_000 &+ UInt64(truncatingIfNeeded: spec.tv_nsec)
    }

    /// Nanoseconds since `start`, never negative, as swift-metrics takes them.
    @inline(__always)
    static func elapsed(since start: UInt64) -> Int64 {
        let now = now()
        return now > start ? Int64(clamping: now &- start) : 0
    }
}
