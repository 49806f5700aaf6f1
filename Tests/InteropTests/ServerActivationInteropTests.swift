import Foundation
import Testing

/// Socket activation, SIGHUP and QEMU's export listing against the built server.
@Suite("Server activation, reload and listing", .serialized, .noLeftoverProcesses)
struct ServerActivationInteropTests {
    @Test("under systemd socket activation the server serves the inherited socket",
          .enabled(if: Peers.available("systemd-socket-activate", "nbdinfo")))
    func socketActivation() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 3 << 20)
        let port = FreePort.next()
        // Started detached through sh (we keep its PID): Foundation's Process reaper blocks
        // forever on a child that systemd-socket-activate replaced with exec, which would
        // hang every later `run`.
        let log = dir.file("server.log")
        let launch = try run(["sh", "-c", "systemd-socket-activate -l 127.0.0.1:\(port) '\(Peers.swiftnbd)' serve '\(dir.file("disk.img"))' --name act >'\(log)' 2>&1 & echo $!"])
        let pid = pid_t(launch.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(pid > 0, "\(launch)")
        defer {
            if pid > 0 {
                kill(pid, SIGTERM)
                for _ in 0..<500 where kill(pid, 0) == 0 { usleep(20_000) }
                if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
            }
        }
        var listening = false
        for _ in 0..<250 where !listening {
            listening = canConnect(.tcp(host: "127.0.0.1", port: port))
            if !listening { usleep(20_000) }
        }
        #expect(listening)
        let result = try run(["nbdinfo", "--json", "nbd://127.0.0.1:\(port)/act"], timeout: 30)
        let serverLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(result.succeeded, "\(result)\n\(serverLog)")
        let export = ((try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])?["exports"] as? [[String: Any]])?.first
        #expect(export?["export-size"] as? Int == 3 << 20)
        #expect(serverLog.contains("(fd 3)"), "\(serverLog)")
    }

    @Test("SIGHUP calls the reload hook and the server keeps serving",
          .enabled(if: Peers.available("nbdinfo")))
    func sighupKeepsServing() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 1 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img")])
        defer { server.stop() }
        kill(server.process.pid, SIGHUP)
        var logged = false
        for _ in 0..<100 where !logged {
            usleep(20_000)
            logged = server.log.contains("reload requested")
        }
        #expect(logged, "\(server.log)")
        #expect(server.process.isRunning)
        try runExpectingSuccess(["nbdinfo", server.uri()], server: server)
    }

    @Test("qemu-nbd -L lists both exports with descriptions and flags",
          .enabled(if: Peers.available("qemu-nbd")))
    func qemuNBDList() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("a.img"), size: 1 << 20)
        try makeSparseFile(dir.file("b.img"), size: 1 << 20)
        let server = try SwiftNBDServe(["--export", "one=\(dir.file("a.img")),desc=The first", "--export", "two=\(dir.file("b.img")),ro"])
        defer { server.stop() }
        let result = try runExpectingSuccess(["qemu-nbd", "-L", "-b", "127.0.0.1", "-p", String(server.port)], server: server)
        #expect(result.stdout.contains("exports available: 2"), "\(result)")
        #expect(result.stdout.contains("export: 'one'") && result.stdout.contains("description: The first"))
        #expect(result.stdout.contains("export: 'two'") && result.stdout.contains("readonly"))
    }
}
