import Testing
import Foundation

@Suite("Test harness")
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

    @Test("free ports are distinct")
    func freePortsAreDistinct() {
        let ports = (0..<5).map { _ in FreePort.next() }
        #expect(Set(ports).count == 5)
    }
}
