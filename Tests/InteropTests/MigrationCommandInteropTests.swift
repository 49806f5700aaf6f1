import Foundation
import Testing
import QMP

/// `swiftnbd migrate` end to end: the built binary drives two real QEMUs through the whole
/// flow, and aborts cleanly when a phase fails.
@Suite("swiftnbd migrate", .serialized, .noLeftoverProcesses)
struct MigrationCommandInteropTests {
    static let tools = Peers.available("qemu-system-x86_64", "qemu-img", "qemu-io", "qemu-nbd", "certtool")
    /// `--export-server` values: SwiftNBD in-process (the default) and as a `swiftnbd serve`
    /// child, qemu-nbd, and the destination QEMU itself (arrangement A).
    static let exportServers = ["swiftnbd", "swiftnbd-serve", "qemu-nbd", "destination-qemu"]

    struct Setup {
        let dir: TempDir
        let pki: MigrationPKI
        let src: String
        let dst: String
        let source: MigrationVM
        let destination: MigrationVM
        let qemu: QEMUGeneration

        /// - Parameter destinationFormat: raw (pre-filled with junk the mirror must overwrite)
        ///   or qcow2 (a new, empty image).
        init(_ label: String, destinationFormat: String = "raw", qemu: QEMUGeneration = .debian) throws {
            self.qemu = qemu
            pki = try MigrationPKI.shared.get()
            dir = TempDir("migrate-\(label)")
            src = dir.file("src.raw")
            dst = dir.file("dst.\(destinationFormat)")
            try MigrationDisks.makeSource(src)
            if destinationFormat == "raw" {
                try MigrationDisks.makeJunkDestination(dst)
            } else {
                let create = try run(["qemu-img", "create", "-q", "-f", destinationFormat, dst, String(MigrationDisks.size)])
                guard create.succeeded else { throw MigrationTestFailure("\(create)") }
            }
            destination = try MigrationVM(name: "dst", in: dir, disk: dst, diskFormat: destinationFormat,
                                          tls: (pki.trusted, "server"), incoming: true, qemu: qemu)
            source = try MigrationVM(name: "src", in: dir, disk: src, tls: (pki.trusted, "client"), incoming: false, qemu: qemu)
            try source.waitForGuest()
        }

        func migrate(_ extra: [String], timeout: Double = 120) throws -> RunResult {
            try withUnblockedSignals {
                try run([Peers.swiftnbd, "migrate", "--source-qmp", source.commandQMPPath, "--destination-qmp", destination.commandQMPPath,
                         "--disk", "vda-format=\(dst)", "--tls-certificates", pki.trusted, "--json"] + extra,
                    environment: qemu.pathEnvironment, timeout: timeout)
            }
        }

        var context: String { "source qemu:\n\(source.process.log)\ndestination qemu:\n\(destination.process.log)" }

        func shutdown() {
            source.shutdown()
            destination.shutdown()
        }
    }

    @Test("migrate moves a writing guest and reports times, throughput, downtime and bytes",
          .enabled(if: tools), .timeLimit(.minutes(2)), arguments: exportServers, QEMUGeneration.all)
    func endToEnd(exportServer: String, qemu: QEMUGeneration) throws {
        let setup = try Setup("\(exportServer)-\(qemu.name)", qemu: qemu)
        defer { setup.shutdown() }
        let nbdPort = FreePort.next()
        let result = try setup.migrate(["--export-server", exportServer, "--nbd-port", String(nbdPort), "--no-resume", "--timeout", "60"])
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate via \(exportServer), QEMU \(qemu.name)] \(report)")
        #expect(report["status"] == "completed")
        #expect((report["mirror-bytes"]?.intValue ?? 0) >= Int64(MigrationDisks.size))
        #expect((report["disk-transferred-bytes"]?.intValue ?? 0) >= Int64(MigrationDisks.size))
        #expect((report["mirror-bytes-per-second"]?.doubleValue ?? 0) > 0)
        #expect((report["ram-transferred-bytes"]?.intValue ?? 0) > 0)
        #expect(report["downtime-ms"]?.intValue != nil)
        #expect((report["ram-migration-seconds"]?.doubleValue ?? 0) > 0)
        #expect(report["destination-resumed"] == false)
        #expect(!canConnect(.tcp(host: "127.0.0.1", port: nbdPort)), "the export must be gone before the guest resumes")

        let compare = try run([qemu.img, "compare", "-U", "-f", "raw", "-F", "raw", setup.src, setup.dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
        let sourceTags = try MigrationGuestTags.scan(setup.src)
        #expect(sourceTags.maxCounter > 0)
        #expect(try MigrationGuestTags.scan(setup.dst).maxCounter == sourceTags.maxCounter)
        #expect(try setup.source.qmp.execute("query-block-jobs") == [])

        try setup.destination.qmp.execute("cont")
        var resumed = try MigrationGuestTags.scan(setup.dst)
        let deadline = Date().addingTimeInterval(30)
        while resumed.maxCounter <= sourceTags.maxCounter && Date() < deadline {
            usleep(100_000)
            resumed = try MigrationGuestTags.scan(setup.dst)
        }
        #expect(resumed.maxCounter > sourceTags.maxCounter, "destination guest did not continue: \(resumed)\n\(setup.context)")
    }

    @Test("migrate into a qcow2 destination: the export writes guest data through the qcow2 driver, qemu-img checks it clean",
          .enabled(if: tools), .timeLimit(.minutes(2)), arguments: ["swiftnbd", "swiftnbd-serve"])
    func qcow2Destination(exportServer: String) throws {
        let setup = try Setup("qcow2-\(exportServer)", destinationFormat: "qcow2")
        defer { setup.shutdown() }
        let result = try withUnblockedSignals {
            try run([Peers.swiftnbd, "migrate", "--source-qmp", setup.source.commandQMPPath,
                     "--destination-qmp", setup.destination.commandQMPPath, "--disk", "vda-format=\(setup.dst),format=qcow2",
                     "--tls-certificates", setup.pki.trusted, "--export-server", exportServer, "--no-resume", "--json",
                     "--timeout", "60"], timeout: 120)
        }
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let check = try run(["qemu-img", "check", "-U", setup.dst])
        #expect(check.succeeded, "\(check)")
        let compare = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", setup.src, setup.dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
        let sourceTags = try MigrationGuestTags.scan(setup.src)
        let migrated = try MigrationGuestTags.scan(qcow2: setup.dst, in: setup.dir)
        #expect(sourceTags.maxCounter > 0 && migrated.maxCounter == sourceTags.maxCounter, "\(sourceTags) vs \(migrated)")

        // The destination QEMU opens what we wrote as qcow2 and its guest goes on writing.
        try setup.destination.qmp.execute("cont")
        var resumed = migrated
        let deadline = Date().addingTimeInterval(30)
        while resumed.maxCounter <= sourceTags.maxCounter && Date() < deadline {
            usleep(500_000)
            resumed = try MigrationGuestTags.scan(qcow2: setup.dst, in: setup.dir)
        }
        #expect(resumed.maxCounter > sourceTags.maxCounter, "destination guest did not continue: \(resumed)\n\(setup.context)")
    }

    @Test("two disks move in one run: the writing raw boot disk and a qcow2 data disk, each through its own TLS export",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func twoDisks() throws {
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migrate-two-disks")
        let src = dir.file("src.raw"), dst = dir.file("dst.raw")
        let srcData = dir.file("src-data.qcow2"), dstData = dir.file("dst-data.qcow2")
        try MigrationDisks.makeSource(src)
        try MigrationDisks.makeJunkDestination(dst)
        for command in [["qemu-img", "create", "-q", "-f", "qcow2", srcData, "32M"],
                        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x3c 0 4M", "-c", "write -P 0xc3 20M 1M", srcData],
                        ["qemu-img", "create", "-q", "-f", "qcow2", dstData, "32M"]] {
            let result = try run(command)
            try #require(result.succeeded, "\(result)")
        }
        let destination = try MigrationVM(name: "dst", in: dir, disk: dst, dataDisk: (dstData, "qcow2"),
                                          tls: (pki.trusted, "server"), incoming: true)
        defer { destination.shutdown() }
        let source = try MigrationVM(name: "src", in: dir, disk: src, dataDisk: (srcData, "qcow2"),
                                     tls: (pki.trusted, "client"), incoming: false)
        defer { source.shutdown() }
        try source.waitForGuest()

        let result = try withUnblockedSignals {
            try run([Peers.swiftnbd, "migrate", "--source-qmp", source.commandQMPPath, "--destination-qmp", destination.commandQMPPath,
                     "--disk", "vda-format=\(dst)", "--disk", "vdb-format=\(dstData),format=qcow2",
                     "--tls-certificates", pki.trusted, "--no-resume", "--json", "--timeout", "60"], timeout: 120)
        }
        try #require(result.succeeded, "\(result)\nsource:\n\(source.process.log)\ndestination:\n\(destination.process.log)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        #expect(report["status"] == "completed")
        #expect((report["mirror-bytes"]?.intValue ?? 0) >= Int64(MigrationDisks.size + (32 << 20)), "\(report)")

        let boot = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", src, dst])
        #expect(boot.succeeded && boot.stdout.contains("Images are identical."), "\(boot)")
        let data = try run(["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "qcow2", srcData, dstData])
        #expect(data.succeeded && data.stdout.contains("Images are identical."), "\(data)")
        let check = try run(["qemu-img", "check", "-U", dstData])
        #expect(check.succeeded, "\(check)")
    }

    @Test("migrate resumes the destination itself and prints a text report by default",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func resumesDestination() throws {
        let setup = try Setup("resume")
        defer { setup.shutdown() }
        let result = try withUnblockedSignals {
            try run([Peers.swiftnbd, "migrate", "--source-qmp", setup.source.commandQMPPath,
                     "--destination-qmp", setup.destination.commandQMPPath, "--disk", "vda-format=\(setup.dst)",
                     "--tls-certificates", setup.pki.trusted,
                     "--downtime-limit", "300", "--max-bandwidth", "1G", "--multifd-channels", "2", "--auto-converge"], timeout: 120)
        }
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        #expect(result.stdout.contains("migration completed via swiftnbd (in-process)"))
        #expect(result.stdout.contains("downtime"))
        #expect(try setup.destination.qmp.execute("query-status")["status"] == "running")
        #expect(try setup.source.qmp.execute("query-status")["status"] == "postmigrate")
        let parameters = try setup.source.qmp.execute("query-migrate-parameters")
        #expect(parameters["downtime-limit"]?.intValue == 300)
        #expect(parameters["max-bandwidth"]?.intValue == 1 << 30)
        #expect(parameters["multifd-channels"]?.intValue == 2)
        let capabilities = try setup.source.qmp.execute("query-migrate-capabilities").arrayValue ?? []
        #expect(capabilities.contains { $0["capability"] == "auto-converge" && $0["state"] == true })
        #expect(capabilities.contains { $0["capability"] == "multifd" && $0["state"] == true })
    }

    @Test("a mirror that misses its time limit is aborted: source keeps running, nothing is left behind",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func abortLeavesSourceRunning() throws {
        let setup = try Setup("abort")
        defer { setup.shutdown() }
        let nbdPort = FreePort.next()
        let before = try MigrationGuestTags.scan(setup.src)
        // 1 MiB/s cannot copy 256 MiB within 3 s.
        let result = try setup.migrate(["--nbd-port", String(nbdPort), "--mirror-speed", "1M", "--timeout", "3"])
        #expect(result.status == 1, "\(result)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        #expect(report["status"] == "failed")
        #expect(report["code"] == "timed out")
        #expect(report["phase"] == "mirroring the disks")
        #expect(report["cleanup-problems"] == [], "\(report)")

        #expect(try setup.source.qmp.execute("query-status")["status"] == "running")
        #expect(try setup.source.qmp.execute("query-block-jobs") == [])
        let nodes = try setup.source.qmp.execute("query-named-block-nodes").arrayValue?.compactMap { $0["node-name"]?.stringValue } ?? []
        #expect(!nodes.contains { $0.hasPrefix("swnbd-mig") }, "\(nodes)")
        #expect(!canConnect(.tcp(host: "127.0.0.1", port: nbdPort)), "export still listening")
        #expect(setup.destination.process.waitForExit(timeout: 15) != nil, "destination should be torn down")
        var after = try MigrationGuestTags.scan(setup.src)
        let deadline = Date().addingTimeInterval(20)
        while after.maxCounter <= before.maxCounter && Date() < deadline {
            usleep(100_000)
            after = try MigrationGuestTags.scan(setup.src)
        }
        #expect(after.maxCounter > before.maxCounter, "the source guest should keep writing: \(after)")
    }

    @Test("Ctrl-C during the mirror aborts cleanly and the source keeps running",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func interruptAborts() throws {
        let setup = try Setup("interrupt")
        defer { setup.shutdown() }
        let output = setup.dir.file("migrate.out")
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Peers.swiftnbd)
        process.arguments = ["migrate", "--source-qmp", setup.source.commandQMPPath, "--destination-qmp", setup.destination.commandQMPPath,
                             "--disk", "vda-format=\(setup.dst)", "--tls-certificates", setup.pki.trusted, "--json",
                             "--mirror-speed", "1M", "--timeout", "60"]
        let outputHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = outputHandle
        process.standardError = FileHandle.nullDevice
        ProcessLedger.tag(process)
        try spawn(process, closingAfterwards: [outputHandle])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }

        // Interrupt once the mirror job exists.
        let deadline = Date().addingTimeInterval(30)
        while (try setup.source.qmp.execute("query-block-jobs")) == [] && Date() < deadline && process.isRunning { usleep(50_000) }
        try #require(try setup.source.qmp.execute("query-block-jobs") != [], "the mirror never started")
        kill(process.processIdentifier, SIGINT)
        let exitDeadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < exitDeadline { usleep(20_000) }
        try #require(!process.isRunning, "migrate did not stop after SIGINT")
        #expect(process.terminationStatus == 1)
        let report = try QMPValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: output))))
        #expect(report["code"] == "interrupted", "\(report)")
        #expect(report["cleanup-problems"] == [], "\(report)")
        #expect(try setup.source.qmp.execute("query-status")["status"] == "running")
        #expect(try setup.source.qmp.execute("query-block-jobs") == [])
        #expect(setup.destination.process.waitForExit(timeout: 15) != nil, "destination should be torn down")
    }

    @Test("post-copy after the first iteration still moves disk and RAM intact",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func postcopy() throws {
        let setup = try Setup("postcopy")
        defer { setup.shutdown() }
        // A slow RAM stream keeps pre-copy busy long enough to switch to post-copy.
        let result = try setup.migrate(["--postcopy-after", "1", "--max-bandwidth", "2M",
                                        "--no-resume", "--timeout", "60"])
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        print("[migrate post-copy] \(report)")
        #expect(report["postcopy"] == true)
        let compare = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", setup.src, setup.dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
        try setup.destination.qmp.execute("cont")
        #expect(try setup.destination.qmp.execute("query-status")["status"] == "running")
    }

    @Test("a destination that is not waiting for a migration is refused before anything changes",
          .enabled(if: tools), .timeLimit(.minutes(1)))
    func destinationNotIncoming() throws {
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migrate-preflight")
        let src = dir.file("src.raw"), other = dir.file("other.raw")
        try MigrationDisks.makeSource(src)
        try MigrationDisks.makeJunkDestination(other, size: 64 << 20)
        let source = try MigrationVM(name: "src", in: dir, disk: src, tls: (pki.trusted, "client"), incoming: false)
        let running = try MigrationVM(name: "other", in: dir, disk: other, tls: (pki.trusted, "server"), incoming: false, paused: true)
        defer { source.shutdown(); running.shutdown() }
        let result = try withUnblockedSignals {
            try run([Peers.swiftnbd, "migrate", "--source-qmp", source.commandQMPPath, "--destination-qmp", running.commandQMPPath,
                     "--disk", "vda-format=\(other)", "--tls-certificates", pki.trusted], timeout: 60)
        }
        #expect(result.status == 1)
        #expect(result.stderr.contains("expected inmigrate"), "\(result)")
        #expect(try source.qmp.execute("query-status")["status"] == "running")
        #expect(try source.qmp.execute("query-migrate")["status"] == nil)
        #expect(running.process.isRunning, "a VM that was not part of a migration must not be shut down")
        let objects = try source.qmp.execute("qom-list", ["path": "/objects"]).arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(!objects.contains("swiftnbd-migrate-tls"), "\(objects)")
    }

    @Test("migrate works over IPv6 loopback for both the NBD and the migration stream",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func ipv6() throws {
        let setup = try Setup("ipv6")
        defer { setup.shutdown() }
        let result = try setup.migrate(["--host", "::1", "--no-resume", "--timeout", "60"])
        try #require(result.succeeded, "\(result)\n\(setup.context)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        #expect(report["disks"]?.arrayValue?.first?["endpoint"]?.stringValue?.hasPrefix("[::1]:") == true, "\(report)")
        let compare = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", setup.src, setup.dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
    }

    @Test("a client certificate outside --tls-authz is refused and the migration aborts with the source running",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func authorizationRefused() throws {
        let setup = try Setup("authz")
        defer { setup.shutdown() }
        let result = try setup.migrate(["--tls-authz", "CN=someone-else,O=Elsewhere", "--timeout", "30"])
        #expect(result.status == 1, "\(result)")
        let report = try QMPValue.parse(Array(result.stdout.utf8))
        #expect(report["phase"] == "mirroring the disks", "\(report)")
        #expect(report["error"]?.stringValue?.contains("blockdev-add") == true, "\(report)")
        #expect(try setup.source.qmp.execute("query-status")["status"] == "running")
        #expect(try setup.source.qmp.execute("query-block-jobs") == [])
        #expect(setup.destination.process.waitForExit(timeout: 15) != nil, "destination should be torn down")
        let untouched = try run(["qemu-io", "-U", "-r", "-f", "raw", "-c", "read -P 0xee 0 256M", setup.dst])
        #expect(untouched.succeeded && !untouched.stdout.contains("verification failed"), "a refused client must not write: \(untouched)")
    }

    @Test("bad arguments are refused with a clear message before touching any VM")
    func validation() throws {
        let cases: [([String], String)] = [
            (["--disk", "novalue"], "node=image"),
            (["--disk", "a=/x", "--nbd-port", "1", "--nbd-port", "2"], "one --nbd-port per --disk"),
            (["--disk", "a=/x", "--postcopy-after", "2", "--multifd-channels", "2"], "post-copy"),
            (["--disk", "a=/x", "--max-bandwidth", "lots"], "max-bandwidth"),
            (["--disk", "a=/x,format=vmdk"], "not raw or qcow2"),
            (["--disk", "a=,format=qcow2"], "node=image"),
            ([], "--disk"),
        ]
        let dir = TempDir("migrate-args")
        for (arguments, message) in cases {
            let result = try run([Peers.swiftnbd, "migrate", "--source-qmp", dir.file("s"), "--destination-qmp", dir.file("d"),
                                  "--tls-certificates", dir.path] + arguments)
            #expect(result.status == 64, "\(arguments): \(result)")
            #expect(result.stderr.contains(message), "\(arguments): \(result)")
        }
    }

    @Test("an unreachable QMP socket is a clear error")
    func missingSocket() throws {
        let dir = TempDir("migrate-nosocket")
        let result = try run([Peers.swiftnbd, "migrate", "--source-qmp", dir.file("none.qmp"), "--destination-qmp", dir.file("d.qmp"),
                              "--disk", "vda=/nonexistent", "--tls-certificates", dir.path], timeout: 60)
        #expect(result.status == 1)
        #expect(result.stderr.contains("none.qmp"), "\(result)")
    }
}
