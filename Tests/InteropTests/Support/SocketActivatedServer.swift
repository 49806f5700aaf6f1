import Foundation

/// A command run under `systemd-socket-activate`, the way systemd runs a socket-activated
/// service: the tool listens, and on the first connection execs the command with the socket
/// as fd 3 (`LISTEN_FDS=1`), so the server's PID is the tool's (what `$MAINPID` would be).
///
/// Started detached through `bash` (we keep the PID, not a `Process`): Foundation's reaper blocks
/// forever on a child that exec'd into something else, and counts a child as running while a
/// descendant holds a descriptor it inherited, so the server gets its own log file, /dev/null
/// as stdin, and nothing else of ours.
final class SocketActivatedServer {
    /// The PID that becomes the server on activation (or `wrapper`'s, when one is given).
    let launchedPID: pid_t
    let logPath: String
    private let scratch = TempDir("activated")

    /// - Parameters:
    ///   - listen: `systemd-socket-activate -l` address: `127.0.0.1:PORT` or a socket path.
    ///   - command: the service's argv (ExecStart= expanded).
    ///   - wrapper: run before `systemd-socket-activate`, e.g. `strace -f -o FILE`.
    init(listen: String, command: [String], wrapper: [String] = []) throws {
        logPath = scratch.file("server.log")
        // -E: systemd-socket-activate hands its child only the variables it is told to, and the
        // ledger token must reach the server so a leftover one is caught.
        let argv = wrapper + ["systemd-socket-activate", "-l", listen, "-E", ProcessLedger.variable] + command
        // Descriptors above 2 are closed first: Foundation leaves one of its own open in the
        // child, and a wrapper that keeps it (strace does) would make `run` wait for it forever.
        let script = """
            for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
            \(argv.map(Self.shellQuoted).joined(separator: " ")) </dev/null >\(Self.shellQuoted(logPath)) 2>&1 & echo $!
            """
        let launch = try run(["bash", "-c", script])
        guard launch.succeeded, let pid = pid_t(launch.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
            throw FixtureError("could not launch systemd-socket-activate: \(launch)")
        }
        launchedPID = pid
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Connects once (which activates the server) and waits until `listener` accepts.
    func waitUntilListening(_ listener: Listener, timeout: Double = 10) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if canConnect(listener) { return }
            usleep(20_000)
        }
        throw FixtureError("systemd-socket-activate is not listening on \(listener)\n\(log)")
    }

    /// Waits for `text` in the server's log.
    @discardableResult
    func waitForLog(_ text: String, timeout: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.contains(text) { return true }
            usleep(20_000)
        }
        return false
    }

    /// SIGTERM to `pid` (the server), then waits for it and for the launched process to end;
    /// SIGKILL after `grace` seconds. Returns whether the server ended by itself.
    @discardableResult
    func stop(serverPID pid: pid_t? = nil, grace: Double = 15) -> Bool {
        let server = pid ?? launchedPID
        kill(server, SIGTERM)
        let clean = Self.waitForExit(server, timeout: grace)
        if !clean { kill(server, SIGKILL) }
        if !Self.waitForExit(launchedPID, timeout: grace) { kill(launchedPID, SIGKILL) }
        _ = Self.waitForExit(launchedPID, timeout: 5)
        return clean
    }

    deinit {
        if Self.isAlive(launchedPID) { stop(grace: 5) }
    }

    /// The direct children of `pid` (to find the server under a wrapper such as strace).
    static func children(of pid: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> pid_t? in
            guard let child = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == pid ? child : nil
        }
    }

    /// Alive and not a zombie (the process is not our child, so nobody here reaps it).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    static func waitForExit(_ pid: pid_t, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while isAlive(pid) && Date() < deadline { usleep(20_000) }
        return !isAlive(pid)
    }

    static func shellQuoted(_ word: String) -> String {
        "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
