import Testing
import Foundation

@Suite("Test harness", .noLeftoverProcesses)
struct HarnessTests {
    @Test("run captures output and exit status")
    func runCapturesOutput() throws {
        let result = try run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(result.status == 3)
        #expect(result.stdout == "out\n")
        #expect(result.stderr == "err\n")
    }

    @Test("run gives up on a command that outlives its time limit")
    func runTimesOut() {
        #expect(throws: RunTimeout.self) { try run(["sleep", "5"], timeout: 0.3) }
    }

    @Test("spawning leaks no file descriptors (Process.run() crashes once /proc/self/fd fills glibc's buffer)")
    func spawnsLeakNoDescriptors() throws {
        func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }
        _ = try run(["true"])
        let before = openDescriptors()
        for _ in 0 ..< 100 {
            #expect(try run(["sh", "-c", "echo out; echo err >&2"], stdin: Data("in".utf8)).succeeded)
        }
        for _ in 0 ..< 20 {
            let server = try ServerProcess(["sleep", "30"], listener: nil)
            server.stop(grace: 1)
        }
        // Other tests run in parallel and open descriptors of their own: allow some slack,
        // far below the 3 per spawn (360 here) that leaked before.
        #expect(openDescriptors() - before < 60, "\(before) → \(openDescriptors())")
    }

    @Test("free ports are distinct")
    func freePortsAreDistinct() {
        let ports = (0..<5).map { _ in FreePort.next() }
        #expect(Set(ports).count == 5)
    }

    @Test("the process ledger finds a detached grandchild of a test, and only by its own token")
    func ledgerFindsDetachedGrandchildren() throws {
        let token = "harness-\(UUID().uuidString.prefix(8))"
        try ProcessLedger.$token.withValue(token) {
            // The shell exits at once; its sleep runs on in a session of its own, like a
            // daemonized qemu-nbd would. It closes every inherited descriptor first: Foundation
            // counts a child as running while anything holds the socket it watches it by.
            try run(["bash", "-c", "cd /proc/$$/fd && for fd in *; do [ $fd -gt 2 ] && eval \"exec $fd>&-\"; done; "
                     + "setsid sleep 60 </dev/null >/dev/null 2>&1 &"], timeout: 20)
        }
        var survivors: [(pid: Int32, command: String)] = []
        let deadline = Date().addingTimeInterval(10)
        while survivors.isEmpty && Date() < deadline {
            usleep(20_000)
            survivors = ProcessLedger.survivors(of: token)
        }
        try #require(survivors.count == 1, "\(survivors)")
        #expect(survivors[0].command == "sleep 60")
        #expect(ProcessLedger.survivors(of: token + "x").isEmpty)
        kill(survivors[0].pid, SIGKILL)
        let gone = Date().addingTimeInterval(10)
        while !ProcessLedger.survivors(of: token).isEmpty && Date() < gone { usleep(20_000) }
        #expect(ProcessLedger.survivors(of: token).isEmpty)
    }
}
