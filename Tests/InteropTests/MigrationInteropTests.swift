import Foundation
import Testing
import QMP

/// Live migration without shared storage, arrangement B1 of docs/migration.md §2: the source
/// QEMU mirrors its disk over NBD+TLS into an external server that exports the destination
/// image, then migrates RAM over TLS with pause-before-switchover, and the guest (the
/// boot-sector writer) carries on at the destination.
@Suite("Block migration through an external NBD export", .serialized, .noLeftoverProcesses)
struct MigrationInteropTests {
    static let tools = Peers.available("qemu-system-x86_64", "qemu-img", "qemu-io", "certtool")
    static let servers = MigrationExportServer.allCases

    @Test("a writing guest moves to the destination with its disk mirrored over TLS into the export",
          .enabled(if: tools), .timeLimit(.minutes(2)), arguments: servers, QEMUGeneration.all)
    func liveMigration(server: MigrationExportServer, qemu: QEMUGeneration) throws {
        try #require(server.isAvailable, "\(server) not available")
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migration-\(server)-\(qemu.name)")
        let src = dir.file("src.raw"), dst = dir.file("dst.raw")
        try MigrationDisks.makeSource(src)
        try MigrationDisks.makeJunkDestination(dst)
        let nbdPort = FreePort.next(), migrationPort = FreePort.next()

        // Both VMs, and qemu-nbd when it is the export, are of the same generation.
        let export = try server.start(image: dst, port: nbdPort, pki: pki.trusted, qemu: qemu)
        let destination = try MigrationVM(name: "dst", in: dir, disk: dst, tls: (pki.trusted, "server"), incoming: true, qemu: qemu)
        let source = try MigrationVM(name: "src", in: dir, disk: src, tls: (pki.trusted, "client"), incoming: false, qemu: qemu)
        defer {
            source.shutdown()
            destination.shutdown()
            export.stop()
        }
        func context() -> String {
            "server log:\n\(export.log)\nsource qemu:\n\(source.process.log)\ndestination qemu:\n\(destination.process.log)"
        }
        try source.waitForGuest()

        let flow = MigrationFlow(source: source, destination: destination, nbdPort: nbdPort, migrationPort: migrationPort)
        let timings: MigrationFlow.Timings
        do {
            timings = try flow.migrate()
        } catch {
            Issue.record("migration failed: \(error)\n\(context())")
            return
        }
        print("[\(server), QEMU \(qemu.name)] \(timings)")
        if server == .swiftnbd {
            // The mirror's connection, seen from the export: extended headers with QEMU 10.
            #expect(export.log.contains(qemu.serverLogReplyForm), "\(export.log)")
        }

        // B1 step 8 (docs/migration.md §3.1): the server flushes, closes the image and exits before the guest resumes.
        let stopStarted = Date()
        let exitStatus = export.stop(grace: 30)
        #expect(!export.isRunning)
        if server == .swiftnbd { #expect(exitStatus == 0, "swiftnbd serve should exit 0 on SIGTERM:\n\(export.log)") }
        print("[\(server)] server stopped \(String(format: "%.2f", Date().timeIntervalSince(stopStarted))) s after SIGTERM")

        // The source is paused, so its image is the switchover state.
        let compare = try run([qemu.img, "compare", "-U", "-f", "raw", "-F", "raw", src, dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)\n\(context())")
        let regions = try MigrationDisks.checkKnownRegions(dst)
        #expect(regions.succeeded && !regions.stdout.contains("Pattern verification failed"), "\(regions)")
        let sourceTags = try MigrationGuestTags.scan(src)
        let destinationTags = try MigrationGuestTags.scan(dst)
        #expect(sourceTags.maxCounter > 0, "the guest wrote nothing on the source: \(sourceTags)")
        #expect(destinationTags.corrupt == 0, "\(destinationTags)")
        #expect(destinationTags.maxCounter == sourceTags.maxCounter, "source \(sourceTags), destination \(destinationTags)")
        let lastLBA = try #require(sourceTags.maxCounterLBA)
        #expect(try MigrationGuestTags.sector(dst, lba: lastLBA) == MigrationGuestTags.sector(src, lba: lastLBA))

        // The guest resumes on the destination and keeps writing, with counters above the source's last.
        try destination.qmp.execute("cont")
        _ = try destination.qmp.waitForEvent(named: "RESUME", timeout: 30)
        var resumed = destinationTags
        let deadline = Date().addingTimeInterval(30)
        while resumed.maxCounter <= sourceTags.maxCounter && Date() < deadline {
            usleep(100_000)
            resumed = try MigrationGuestTags.scan(dst)
        }
        #expect(resumed.maxCounter > sourceTags.maxCounter, "destination guest did not write: \(resumed)\n\(context())")
        #expect(resumed.corrupt == 0, "\(resumed)")
        #expect(try destination.qmp.execute("query-status")["status"] == "running")
        #expect(try source.qmp.execute("query-status")["status"] == "postmigrate")
    }

    @Test("swiftnbd serve --exit-on-disconnect flushes and exits by itself when the mirror lets go",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func exitOnDisconnect() throws {
        let server = MigrationExportServer.swiftnbd
        try #require(server.isAvailable, "\(server) not available")
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migration-eod")
        let src = dir.file("src.raw"), dst = dir.file("dst.raw")
        try MigrationDisks.makeSource(src)
        try MigrationDisks.makeJunkDestination(dst)
        let nbdPort = FreePort.next(), migrationPort = FreePort.next()
        let export = try server.start(image: dst, port: nbdPort, pki: pki.trusted, exitOnDisconnect: true)
        let destination = try MigrationVM(name: "dst", in: dir, disk: dst, tls: (pki.trusted, "server"), incoming: true)
        let source = try MigrationVM(name: "src", in: dir, disk: src, tls: (pki.trusted, "client"), incoming: false)
        defer {
            source.shutdown()
            destination.shutdown()
            export.stop()
        }
        try source.waitForGuest()
        let flow = MigrationFlow(source: source, destination: destination, nbdPort: nbdPort, migrationPort: migrationPort)
        do {
            _ = try flow.migrate()
        } catch {
            Issue.record("migration failed: \(error)\nserver log:\n\(export.log)")
            return
        }
        // blockdev-del closed the only connection: no SIGTERM from us.
        let status = export.waitForExit(timeout: 30)
        #expect(status == 0, "server did not exit cleanly by itself (status \(status.map(String.init) ?? "still running")):\n\(export.log)")
        let compare = try run(["qemu-img", "compare", "-U", "-f", "raw", "-F", "raw", src, dst])
        #expect(compare.succeeded && compare.stdout.contains("Images are identical."), "\(compare)")
        try destination.qmp.execute("cont")
        _ = try destination.qmp.waitForEvent(named: "RESUME", timeout: 30)
        #expect(try destination.qmp.execute("query-status")["status"] == "running")
    }

    @Test("a mirror client with a certificate from another CA is refused by the export",
          .enabled(if: tools), .timeLimit(.minutes(1)), arguments: servers)
    func foreignClientCertificateRefused(server: MigrationExportServer) throws {
        try #require(server.isAvailable, "\(server) not available")
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migration-neg-\(server)")
        let dst = dir.file("dst.raw")
        try MigrationDisks.makeJunkDestination(dst, size: 64 << 20)
        let port = FreePort.next()
        let export = try server.start(image: dst, port: port, pki: pki.trusted)
        let source = try MigrationVM(name: "src", in: dir, disk: nil, tls: (pki.foreignClient, "client"), incoming: false, paused: true)
        defer { source.shutdown(); export.stop() }

        let error = try #require(throws: QMPError.self) { try MigrationFlow.addMirrorTarget(on: source, port: port) }
        #expect(error.code == .commandFailed, "\(error)")
        #expect(error.command == "blockdev-add")
        #expect(export.isRunning, "the export should survive a refused client:\n\(export.log)")
        let untouched = try run(["qemu-io", "-U", "-r", "-f", "raw", "-c", "read -P 0xee 0 64M", dst])
        #expect(untouched.succeeded && !untouched.stdout.contains("verification failed"), "a refused client must not write: \(untouched)")
    }

    @Test("a source that requires TLS refuses an export that offers none",
          .enabled(if: tools), .timeLimit(.minutes(1)), arguments: servers)
    func plaintextExportRefused(server: MigrationExportServer) throws {
        try #require(server.isAvailable, "\(server) not available")
        let pki = try MigrationPKI.shared.get()
        let dir = TempDir("migration-plain-\(server)")
        let dst = dir.file("dst.raw")
        try MigrationDisks.makeJunkDestination(dst, size: 64 << 20)
        let port = FreePort.next()
        let export = try server.start(image: dst, port: port, pki: nil)
        let source = try MigrationVM(name: "src", in: dir, disk: nil, tls: (pki.trusted, "client"), incoming: false, paused: true)
        defer { source.shutdown(); export.stop() }

        let error = try #require(throws: QMPError.self) { try MigrationFlow.addMirrorTarget(on: source, port: port) }
        #expect(error.code == .commandFailed, "\(error)")
        #expect(error.message.lowercased().contains("starttls") || error.message.lowercased().contains("tls"), "\(error)")
    }
}
