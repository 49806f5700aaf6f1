import Foundation

/// Runs `body` with every signal unblocked on the calling thread, then restores the mask.
///
/// A child inherits the signal mask of the thread that spawns it, and Swift's test threads
/// block nearly all signals (seen: SigBlk fffffffe3bfbea67 on a qemu-nbd started from a test).
/// qemu-nbd never unblocks SIGTERM, so `ServerProcess.stop()` waited its whole grace period and
/// fell back to SIGKILL: no clean shutdown, which is exactly what step 8 of the
/// B1 sequence (docs/migration.md §3.1) relies on.
/// `run` and `ServerProcess` spawn through this, so every child starts with a clean mask.
func withUnblockedSignals<T>(_ body: () throws -> T) rethrows -> T {
    var empty = sigset_t(), saved = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    return try body()
}
