import Foundation

/// Turns SIGINT/SIGTERM/SIGHUP into calls on an ordinary thread, and ignores SIGPIPE
/// (a client vanishing mid-reply must never kill the server, CVE-2017-10664).
///
/// The C handler only writes the signal number to a pipe (async-signal-safe, CVE-2015-0847
/// was work done inside a handler); a watcher thread reads the pipe and calls `handler`.
public final class SignalWatcher: @unchecked Sendable {
    public enum Event: Sendable, Equatable {
        /// SIGINT or SIGTERM: shut down gracefully.
        case terminate(signal: Int32)
        /// SIGHUP: reload credentials.
        case reload
    }

    nonisolated(unsafe) private static var writeEnd: Int32 = -1
    private let readEnd: Int32
    private let thread: Thread

    /// Installs the handlers (process-wide; create one watcher per process).
    public init(handler: @escaping @Sendable (Event) -> Void) throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw ServerError(.cannotListen, "pipe: \(String(cString: strerror(errno)))", errno: errno)
        }
        readEnd = fds[0]
        Self.writeEnd = fds[1]
        // The write end must never block inside a handler; neither end leaks into children.
        _ = fcntl(fds[1], F_SETFL, O_NONBLOCK)
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        signal(SIGPIPE, SIG_IGN)
        // A blocked signal mask is inherited across exec (test runners and some supervisors
        // start us with SIGTERM blocked): unblock what we handle, on this thread, before
        // the threads started later inherit the mask.
        var handled = sigset_t()
        sigemptyset(&handled)
        for number in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&handled, number) }
        pthread_sigmask(SIG_UNBLOCK, &handled, nil)
        for number in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = Glibc.write(SignalWatcher.writeEnd, &byte, 1)
            }
            action.sa_flags = SA_RESTART
            sigemptyset(&action.sa_mask)
            sigaction(number, &action, nil)
        }
        let readEnd = fds[0]
        thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(readEnd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                handler(Int32(byte) == SIGHUP ? .reload : .terminate(signal: Int32(byte)))
            }
        }
        thread.name = "signals"
        thread.start()
    }

    /// Ignores SIGPIPE without watching other signals (for embedders and tests).
    public static func ignoreSIGPIPE() {
        signal(SIGPIPE, SIG_IGN)
    }
}
