import Foundation

/// Set from the SIGINT/SIGTERM handler; only an async-signal-safe store happens there.
nonisolated(unsafe) private var migrateInterruptReceived: sig_atomic_t = 0

/// Turns SIGINT/SIGTERM into a cancel request for the running migration, so that Ctrl-C
/// aborts cleanly (source keeps running) instead of killing the command half-way. A handler
/// (not SIG_IGN) is used on purpose: handled signals reset to default in child processes,
/// ignored ones would be inherited by the export servers we spawn.
final class MigrateInterruptWatcher: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true

    init(onInterrupt: @escaping @Sendable () -> Void) {
        migrateInterruptReceived = 0
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in migrateInterruptReceived = 1 }
        sigemptyset(&action.sa_mask)
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
        let thread = Thread { [self] in
            while isRunning {
                if migrateInterruptReceived != 0 {
                    migrateInterruptReceived = 0
                    onInterrupt()
                }
                usleep(100_000)
            }
        }
        thread.start()
    }

    private var isRunning: Bool { lock.withLock { running } }

    func stop() {
        lock.withLock { running = false }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
