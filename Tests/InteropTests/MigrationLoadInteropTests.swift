import Foundation
import Testing
import QMP

/// `swiftnbd migrate` with a busy Linux guest (Debian's cloud kernel, busybox, a RAM dirtier
/// at a set rate; scripts/build-linux-guest.sh) under TCG: every strategy completes or aborts
/// cleanly, pre-copy that cannot converge is diagnosed, and a post-copy whose stream is cut
/// is recovered. After each migration the guest must continue on the destination with its
/// memory intact (the dirtier checks every page it rewrites) and its disk records intact.
@Suite("swiftnbd migrate under load (Linux guest)", .serialized, .noLeftoverProcesses)
struct MigrationLoadInteropTests {
    static let tools = Peers.available("qemu-system-x86_64", "qemu-img", "certtool", "gcc", "apt-get", "dpkg-deb")
    static let backports = tools && QEMUGeneration.all.contains { $0.name == QEMUGeneration.backports.name }

    struct Setup {
        let dir: TempDir
        let pki: MigrationPKI
        let src: String
        let dst: String
        let source: LinuxMigrationVM
        let destination: LinuxMigrationVM

        let qemu: QEMUGeneration

        init(_ label: String, workingSetMiB: Int, dirtyRateMiB: Int, qemu: QEMUGeneration) throws {
            self.qemu = qemu
            pki = try MigrationPKI.shared.get()
            dir = TempDir("migrate-load-\(label)")
            src = dir.file("src.raw")
            dst = dir.file("dst.raw")
            for image in [src, dst] {
                let create = try run(["qemu-img", "create", "-q", "-f", "raw", image, "64M"])
                guard create.succeeded else { throw MigrationTestFailure("\(create)") }
            }
            destination = try LinuxMigrationVM(name: "dst", in: dir, disk: dst, tls: (pki.trusted, "server"), incoming: true,
                                               workingSetMiB: workingSetMiB, dirtyRateMiB: dirtyRateMiB, qemu: qemu)
            source = try LinuxMigrationVM(name: "src", in: dir, disk: src, tls: (pki.trusted, "client"), incoming: false,
                                          workingSetMiB: workingSetMiB, dirtyRateMiB: dirtyRateMiB, qemu: qemu)
            // A few records on disk and a few full passes over the working set.
            try source.waitForProgress(beyond: 8, timeout: 90)
        }

        func migrate(_ extra: [String], timeout: Double = 180) throws -> RunResult {
            try withUnblockedSignals {
                try run([Peers.swiftnbd, "migrate", "--source-qmp", source.commandQMPPath, "--destination-qmp", destination.commandQMPPath,
                         "--disk", "vda-format=\(dst)", "--tls-certificates", pki.trusted,
                         "--source-tls-creds", "tls0", "--destination-tls-creds", "tls0", "--json"] + extra,
                    environment: qemu.pathEnvironment, timeout: timeout)
            }
        }

        var context: String {
            "source qemu:\n\(source.process.log)\nsource console tail:\n\(source.consoleText.suffix(1500))\n"
                + "destination qemu:\n\(destination.process.log)\ndestination console tail:\n\(destination.consoleText.suffix(1500))"
        }

        /// The guest runs on the destination as the same VM: its progress continues past
        /// where the source stopped (no reboot), every page it rewrites still holds what it
        /// wrote there before the migration, and its disk records are all there.
        func expectGuestContinuesOnDestination() throws {
            let sourceConsole = source.console
            #expect(try source.qmp.execute("query-status")["status"] == "postmigrate")
            #expect(try destination.qmp.execute("query-status")["status"] == "running")
            // Two passes after the migration: every page has been checked at least once.
            let deadline = Date().addingTimeInterval(60)
            var now = destination.console
            while now.pass < sourceConsole.pass + 2 && Date() < deadline {
                usleep(200_000)
                now = destination.console
            }
            print("[migrate load] source console \(sourceConsole); destination console \(now)")
            #expect(now.pass >= sourceConsole.pass + 2, "the guest did not keep running on the destination\n\(context)")
            #expect(now.sequence > sourceConsole.sequence)
            #expect(now.errors == 0 && now.mismatches.isEmpty, "guest memory changed by the migration: \(now.mismatches.prefix(5))")
            #expect(!destination.consoleText.contains("LMIG boot"), "the destination guest booted instead of continuing")
            let before = try LinuxGuestDiskRecords.scan(src)
            let after = try LinuxGuestDiskRecords.scan(dst)
            print("[migrate load] source disk \(before); destination disk \(after)")
            #expect(before.sequenceByLBA.count > 4)
            #expect(after.regressions(from: before).isEmpty, "records lost on the destination: \(after.regressions(from: before).prefix(10))")
            #expect(after.corrupt == 0 && after.maxErrors == 0)
        }

        func shutdown() {
            source.shutdown()
            destination.shutdown()
        }
    }

    struct Strategy: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        var workingSetMiB: Int
        var dirtyRateMiB: Int
        var testDescription: String { name }
    }

    /// Pre-copy, multifd with zstd and xbzrle with a guest they can keep up with; auto-converge
    /// with one that only throttling lets converge (16 MiB/s against 32 MiB/s of dirtying).
    ///
    /// These run on QEMU 10: with QEMU 7.2 under TCG, a destination guest that went through a
    /// long pre-copy (auto-converge: 32 iterations; --converge postcopy: 6-8) was seen to hang
    /// or report pages from different moments (docs/migration.md §9), while the same runs on
    /// QEMU 10 keep the guest intact. The 7.2 tests below avoid long pre-copies for that reason.
    static let strategies = [
        Strategy(name: "pre-copy", arguments: ["--max-bandwidth", "64M"], workingSetMiB: 32, dirtyRateMiB: 4),
        Strategy(name: "multifd zstd", arguments: ["--max-bandwidth", "64M", "--multifd-channels", "2", "--multifd-compression", "zstd"],
                 workingSetMiB: 32, dirtyRateMiB: 4),
        Strategy(name: "xbzrle", arguments: ["--max-bandwidth", "64M", "--xbzrle-cache", "64M"], workingSetMiB: 32, dirtyRateMiB: 4),
        Strategy(name: "auto-converge", arguments: ["--max-bandwidth", "16M", "--auto-converge"], workingSetMiB: 32, dirtyRateMiB: 32),
    ]

    @Test("each strategy moves the writing Linux guest: disks identical, guest continues on the destination",
          .enabled(if: backports), .timeLimit(.minutes(4)), arguments: strategies)
    func strategyCompletes(strategy: Strategy) throws {
        let setup = try Setup(strategy.name.replacingOccurrences(of: " ", with: "-"),
                              workingSetMiB: strategy.workingSetMiB, dirtyRateMiB: strategy.dirtyRateMiB, qemu: .backports)
        defer { setup.shutdown() }
        let result = try setup.migrate(strategy.arguments + ["--no-resume", "--timeout", "120"])
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate load \(strategy.name)] \(report)")
        #expect(report["status"] == "completed")
        #expect((report["ram-iterations"]?.intValue ?? 0) >= 1)
        #expect((report["normal-pages"]?.intValue ?? 0) > 0 && (report["zero-pages"]?.intValue ?? 0) > 0)
        #expect(report["disks"]?.arrayValue?.first?["recopied-bytes"]?.intValue != nil)
        if strategy.name == "auto-converge" {
            #expect((report["peak-throttle-percent"]?.intValue ?? 0) > 0, "auto-converge converged without throttling: \(report)")
        }
        if strategy.name == "xbzrle" { #expect(report["xbzrle-pages"]?.intValue != nil) }
        if strategy.name.hasPrefix("multifd") { #expect((report["multifd-bytes"]?.intValue ?? 0) > 0) }
        // Live progress went to stderr as plain lines (stderr is not a terminal here).
        #expect(result.stderr.contains("migrating RAM | ") && result.stderr.contains("iteration"), "\(result.stderr.prefix(2000))")
        let compare = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", setup.src, setup.dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
        try setup.destination.qmp.execute("cont")
        try setup.expectGuestContinuesOnDestination()
    }

    @Test("pre-copy that cannot converge is diagnosed with the measured figures and remedies, and aborted cleanly",
          .enabled(if: tools), .timeLimit(.minutes(3)))
    func nonConvergingDiagnosed() throws {
        let setup = try Setup("not-converging", workingSetMiB: 64, dirtyRateMiB: 0, qemu: .debian)
        defer { setup.shutdown() }
        let before = setup.source.console
        let result = try setup.migrate(["--max-bandwidth", "32M", "--converge", "abort", "--timeout", "120"])
        #expect(!result.succeeded)
        let failure = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate load not converging] \(failure)")
        #expect(failure["status"] == "failed")
        #expect(failure["code"] == "RAM not converging")
        let diagnosis = try #require(failure["diagnosis"], "\(result)")
        #expect((diagnosis["dirty-bytes-per-second"]?.doubleValue ?? 0) > 0)
        #expect((diagnosis["stream-bytes-per-second"]?.doubleValue ?? 0) > 0)
        #expect((diagnosis["iteration"]?.intValue ?? 0) >= 4)
        let remedies = diagnosis["remedies"]?.arrayValue?.compactMap(\.stringValue) ?? []
        for remedy in ["--auto-converge", "--postcopy-after", "--max-bandwidth"] {
            #expect(remedies.contains { $0.hasPrefix(remedy) }, "no \(remedy) among \(remedies)")
        }
        // The diagnosis was shown while it ran, and the abort was clean.
        #expect(result.stderr.contains("RAM is not converging") && result.stderr.contains("what would help"), "\(result.stderr.suffix(3000))")
        #expect(failure["cleanup-problems"] == [])
        #expect(try setup.source.qmp.execute("query-status")["status"] == "running")
        #expect(try setup.source.qmp.execute("query-block-jobs") == [])
        #expect(setup.destination.process.waitForExit(timeout: 15) != nil, "destination should be shut down")
        let after = try setup.source.waitForProgress(beyond: before.sequence + 4, timeout: 30)
        #expect(after.errors == 0)
    }

    @Test("by default a pre-copy that runs out of time fails with the diagnosis, not a bare time-out, and aborts cleanly",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func timeoutCarriesDiagnosis() throws {
        let setup = try Setup("timeout-diagnosis", workingSetMiB: 64, dirtyRateMiB: 0, qemu: .debian)
        defer { setup.shutdown() }
        let result = try setup.migrate(["--max-bandwidth", "32M", "--timeout", "20"])
        #expect(!result.succeeded)
        let failure = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate load time-out] \(failure)")
        #expect(failure["code"] == "timed out")
        #expect(failure["phase"] == "migrating RAM")
        let message = failure["error"]?.stringValue ?? ""
        #expect(message.contains("no MIGRATION pre-switchover within 20.0 s") && message.contains("RAM is not converging")
                && message.contains("what would help"), "\(message)")
        #expect(failure["diagnosis"]?["remedies"]?.arrayValue?.isEmpty == false)
        #expect(failure["cleanup-problems"] == [])
        #expect(try setup.source.qmp.execute("query-status")["status"] == "running")
        #expect(setup.destination.process.waitForExit(timeout: 15) != nil, "destination should be shut down")
    }

    @Test("--converge postcopy switches a non-converging migration to post-copy; the guest runs on the destination meanwhile",
          .enabled(if: backports), .timeLimit(.minutes(3)))
    func convergeByPostcopy() throws {
        let setup = try Setup("converge-postcopy", workingSetMiB: 64, dirtyRateMiB: 0, qemu: .backports)
        defer { setup.shutdown() }
        let result = try setup.migrate(["--max-bandwidth", "16M", "--converge", "postcopy", "--timeout", "120"])
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate load converge postcopy] \(report)")
        #expect(report["postcopy"] == true)
        #expect(report["destination-resumed"] == true)
        #expect(report["convergence"]?.stringValue?.hasPrefix("switched to post-copy") == true, "\(report)")
        #expect(report["postcopy-seconds"]?.doubleValue != nil)
        #expect(result.stderr.contains("switching to post-copy because RAM is not converging"), "\(result.stderr.suffix(3000))")
        try setup.expectGuestContinuesOnDestination()
    }

    @Test("a post-copy whose stream is cut pauses both sides and is recovered; the guest continues with its memory and disk",
          .enabled(if: tools), .timeLimit(.minutes(3)))
    func postcopyRecovery() throws {
        let setup = try Setup("postcopy-recovery", workingSetMiB: 64, dirtyRateMiB: 0, qemu: .debian)
        defer { setup.shutdown() }
        let listenPort = FreePort.next()
        let relay = try MigrationRelay(targetPort: listenPort)
        defer { relay.stop() }
        // Post-copy pushes the rest of RAM at 4 MiB/s, so there is a post-copy to cut.
        let arguments = ["--max-bandwidth", "32M", "--postcopy-after", "1", "--postcopy-bandwidth", "4M",
                         "--migration-port", String(listenPort), "--migration-via", "127.0.0.1:\(relay.port)", "--timeout", "120"]
        let finished = DispatchSemaphore(value: 0)
        let outcome = RunOutcome()
        Thread {
            outcome.set(Result { try setup.migrate(arguments) })
            finished.signal()
        }.start()
        // Cut once the destination runs the guest in post-copy.
        let deadline = Date().addingTimeInterval(90)
        var cut = false
        while Date() < deadline && finished.wait(timeout: .now() + 0.2) == .timedOut {
            let status = try setup.destination.qmp.execute("query-status")["status"]?.stringValue
            let migration = try setup.source.qmp.execute("query-migrate")["status"]?.stringValue
            if migration == "postcopy-active" && status == "running" {
                usleep(500_000)
                relay.cut()
                cut = true
                break
            }
        }
        if !cut { _ = finished.wait(timeout: .now() + 1) }
        try #require(cut, "post-copy with the guest running on the destination never showed up: \(String(describing: outcome.get()))\n\(setup.context)")
        // The break is seen by both QEMUs (the source reports postcopy-paused until recovered).
        try #require(finished.wait(timeout: .now() + 150) == .success, "swiftnbd migrate did not finish")
        let result = try #require(try outcome.get()?.get())
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate load postcopy recovery] \(report); relay \(relay.stats)")
        #expect(report["postcopy"] == true)
        #expect((report["postcopy-recoveries"]?.intValue ?? 0) >= 1, "\(report)")
        #expect(relay.stats.connections >= 2, "the source did not reconnect through the relay")
        #expect(result.stderr.contains("post-copy stream broke"), "\(result.stderr.suffix(3000))")
        try setup.expectGuestContinuesOnDestination()
    }
}

/// The result of a command run on another thread.
final class RunOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<RunResult, Error>?
    func set(_ result: Result<RunResult, Error>) { lock.withLock { value = result } }
    func get() -> Result<RunResult, Error>? { lock.withLock { value } }
}
