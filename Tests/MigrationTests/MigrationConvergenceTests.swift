import Migration
import QMP
import Testing
import TestSupport

/// The non-convergence rule of `swiftnbd migrate` on synthetic `query-migrate` samples: what
/// it diagnoses, what it leaves alone, which remedies it offers, and that a peer's absurd
/// numbers never trap it. The real guests are in MigrationLoadInteropTests.
@Suite("migration convergence monitor")
struct MigrationConvergenceTests {
    static let mib = 1_048_576.0

    /// An `active` sample at `iteration` with `remaining` MiB left, the guest dirtying
    /// `dirty` MiB/s and the stream carrying `stream` MiB/s.
    static func sample(iteration: Int64, remaining: Double, dirty: Double, stream: Double,
                       throttle: Int64? = nil, status: String = "active") -> MigrationRAMSample {
        var s = MigrationRAMSample()
        s.status = status
        s.iteration = iteration
        s.remainingBytes = Int64(remaining * mib)
        s.pageSize = 4096
        s.dirtyPagesPerSecond = Int64(dirty * mib / 4096)
        s.megabitsPerSecond = stream * mib * 8 / 1_000_000
        s.throttlePercent = throttle
        s.expectedDowntimeMilliseconds = 4000
        return s
    }

    /// Feeds iterations 1...`count` (two samples each, as polling sees them) and returns the
    /// first diagnosis with the iteration it came at.
    static func run(_ monitor: inout MigrationConvergenceMonitor, count: Int64,
                    remaining: (Int64) -> Double, dirty: Double, stream: Double) -> (Int64, MigrationConvergenceDiagnosis)? {
        for iteration in 1 ... count {
            for _ in 0 ..< 2 {
                let s = sample(iteration: iteration, remaining: remaining(iteration), dirty: dirty, stream: stream)
                if let diagnosis = monitor.observe(s) { return (iteration, diagnosis) }
            }
        }
        return nil
    }

    @Test("a guest dirtying as fast as the stream with RAM left not shrinking is diagnosed after the window, first pass excluded")
    func diagnosesNonConvergence() throws {
        var tunables = MigrationTunables()
        tunables.maxBandwidth = 32 << 20
        var monitor = MigrationConvergenceMonitor(window: 3, tunables: tunables)
        let found = Self.run(&monitor, count: 10, remaining: { $0 == 1 ? 400 : 60 }, dirty: 33, stream: 32)
        let (iteration, diagnosis) = try #require(found)
        // Iterations 2, 3, 4 and 5 are recorded (the window plus its starting point).
        #expect(iteration == 5)
        #expect(diagnosis.iteration == 5)
        #expect(diagnosis.remainingNow == Int64(60 * Self.mib))
        #expect(abs(diagnosis.dirtyBytesPerSecond - 33 * Self.mib) < Self.mib * 0.01)
        #expect(diagnosis.summary.contains("RAM is not converging"))
        let remedies = diagnosis.remedies.joined(separator: "\n")
        #expect(remedies.contains("--auto-converge"))
        #expect(remedies.contains("--postcopy-after N or --converge postcopy"))
        // 33 MiB/s × 1.25, rounded up, above the 32 MiB/s limit.
        #expect(remedies.contains("--max-bandwidth 42M"), "\(remedies)")
        // 60 MiB at 32 MiB/s is 1875 ms (1876 if the megabit round trip rounds up), over the
        // default 300 ms.
        #expect(remedies.contains("--downtime-limit 1875") || remedies.contains("--downtime-limit 1876"), "\(remedies)")
        #expect(diagnosis.json["iteration"]?.intValue == 5)
    }

    @Test("shrinking remaining RAM, or a dirty rate well below the stream, is not a diagnosis")
    func leavesConvergingRunsAlone() {
        var shrinking = MigrationConvergenceMonitor()
        #expect(Self.run(&shrinking, count: 12, remaining: { 400 / Double($0) }, dirty: 40, stream: 32) == nil)
        var slowGuest = MigrationConvergenceMonitor()
        #expect(Self.run(&slowGuest, count: 12, remaining: { _ in 60 }, dirty: 20, stream: 32) == nil)
    }

    @Test("samples that are not of an active pre-copy are ignored")
    func ignoresOtherStates() {
        var monitor = MigrationConvergenceMonitor(window: 1)
        for iteration: Int64 in 1 ... 8 {
            let s = Self.sample(iteration: iteration, remaining: 60, dirty: 40, stream: 32, status: "postcopy-active")
            #expect(monitor.observe(s) == nil)
        }
        #expect(monitor.iterations.isEmpty)
    }

    @Test("remedies follow the options already in use")
    func remediesFollowTunables() throws {
        var tunables = MigrationTunables()
        tunables.autoConverge = true
        tunables.postcopyAfterIterations = 50
        tunables.maxBandwidth = 1 << 30
        tunables.downtimeLimitMilliseconds = 10_000
        var monitor = MigrationConvergenceMonitor(window: 2, tunables: tunables)
        var diagnosis: MigrationConvergenceDiagnosis?
        for iteration: Int64 in 1 ... 6 where diagnosis == nil {
            diagnosis = monitor.observe(Self.sample(iteration: iteration, remaining: 60, dirty: 40, stream: 32, throttle: 70))
        }
        let remedies = try #require(diagnosis).remedies
        #expect(remedies.count == 1, "\(remedies)")
        #expect(remedies.first?.contains("throttled the vCPUs to 70 %") == true)
    }

    @Test("a peer's absurd numbers never trap the monitor", arguments: [UInt64(1), 2, 3, 4])
    func hostileNumbers(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let ints: [Int64] = [0, -1, 1, .max, .min, 4096, 1 << 40]
        let doubles: [Double] = [0, -1, .infinity, -.infinity, .nan, 1e300, 5e-324, 256]
        var monitor = MigrationConvergenceMonitor(window: Int(rng.next() % 4))
        for _ in 0 ..< 2000 {
            var s = MigrationRAMSample()
            s.status = rng.next() % 8 == 0 ? "setup" : "active"
            s.iteration = ints[Int(rng.next() % UInt64(ints.count))] &+ Int64(rng.next() % 4)
            s.remainingBytes = ints[Int(rng.next() % UInt64(ints.count))]
            s.pageSize = rng.next() % 3 == 0 ? nil : ints[Int(rng.next() % UInt64(ints.count))]
            s.dirtyPagesPerSecond = ints[Int(rng.next() % UInt64(ints.count))]
            s.megabitsPerSecond = doubles[Int(rng.next() % UInt64(doubles.count))]
            s.throttlePercent = rng.next() % 2 == 0 ? nil : ints[Int(rng.next() % UInt64(ints.count))]
            if let diagnosis = monitor.observe(s) {
                #expect(!diagnosis.text.isEmpty)
            }
        }
        #expect(monitor.iterations.count <= 32)
    }
}
