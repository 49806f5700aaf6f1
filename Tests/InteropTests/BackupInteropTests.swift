import Foundation
import QMP
import Testing

/// `swiftnbd backup` against a running QEMU (7.2 and 10) whose boot-sector guest keeps writing:
/// full + incrementals over TLS with client certificates, each checkpoint's chain restored
/// identical to the disk as it was at that checkpoint (the guest is paused at the checkpoint
/// to take the reference, and resumed while the copy runs, so fleecing has to keep the old
/// data); a failed run cleans up QEMU and keeps earlier backups; broken preconditions are
/// refused with specific errors.
@Suite("swiftnbd backup", .serialized, .noLeftoverProcesses)
struct BackupInteropTests {
    static let tools = Peers.available("qemu-system-x86_64", "qemu-img", "certtool")

    /// Pauses the guest, takes the references, starts a backup, resumes the guest as soon as
    /// QEMU has the fleecing jobs (the checkpoint) so the guest writes during the copy.
    static func checkpoint(_ f: BackupVM, round: Int, extra: [String] = []) throws -> (RunResult, String) {
        try f.vm.qmp.execute("stop")
        let reference = f.dir.file("ref-\(round).raw")
        try f.reference(f.disk, into: reference)
        let backup = BackgroundRun { try f.backup(extra) }
        let deadline = Date().addingTimeInterval(60)
        var started = false
        while Date() < deadline && !started {
            let jobs = try f.vm.qmp.execute("query-block-jobs").arrayValue ?? []
            started = jobs.contains { $0["device"]?.stringValue == "swiftnbd-backup-0" }
            if !started { usleep(5_000) }
        }
        try f.vm.qmp.execute("cont")
        return (try backup.wait(), reference)
    }

    static func report(_ result: RunResult) throws -> QMPValue {
        try QMPValue.parse(Array(result.stdout.utf8))
    }

    static func disk(_ report: QMPValue, _ node: String) -> QMPValue? {
        report["disks"]?.arrayValue?.first { $0["node"]?.stringValue == node }
    }

    @Test("full + incrementals of a writing guest restore identical per checkpoint; a failed run cleans up; refusals",
          .enabled(if: tools), .timeLimit(.minutes(4)), arguments: QEMUGeneration.all)
    func backupChain(qemu: QEMUGeneration) throws {
        let f = try BackupVM("chain", qemu: qemu)
        defer { f.shutdown() }
        try f.vm.waitForGuest(passes: 1)
        let dataReference = f.dir.file("vdb-ref.raw")
        try f.reference(f.dataDisk, into: dataReference)

        var references: [String] = []
        var scratch: Int64 = 0
        var images: [String] = []
        for round in 0..<3 {
            // The first incremental uses QEMU's own TLS object, the others one made by backup.
            let (result, reference) = try Self.checkpoint(f, round: round, extra: round == 1 ? ["--tls-creds", "tls0"] : [])
            try #require(result.succeeded, "round \(round): \(result)\nqemu:\n\(f.vm.process.log)")
            let report = try Self.report(result)
            print("[backup QEMU \(qemu.name) round \(round)] \(report)\n\(result.stderr)")
            #expect(report["kind"]?.stringValue == (round == 0 ? "full" : "incremental"))
            let vda = try #require(Self.disk(report, "vda-format"))
            let vdb = try #require(Self.disk(report, "vdb-format"))
            if round > 0 {
                // Only the guest's 16 MiB region can be dirty on vda; vdb is untouched.
                let read = vda["bytesRead"]?.intValue ?? -1
                #expect(read > 0 && read <= (16 << 20) + 65536, "\(vda)")
                #expect(vdb["bytesRead"]?.intValue == 0, "\(vdb)")
                #expect(vdb["bytesSkipped"]?.intValue == Int64(BackupVM.dataDiskSize), "\(vdb)")
            }
            scratch += vda["scratchBytes"]?.intValue ?? 0
            references.append(reference)
            images.append(try #require(vda["image"]?.stringValue))
            try f.vm.waitForGuest(passes: f.passes + 1)
        }
        // The guest wrote while the copies ran, so QEMU had to keep old data aside (a scratch
        // overlay grew past its empty 256 KiB), and yet every restore below matches.
        #expect(scratch > 3 * (256 << 10), "scratch overlays: \(scratch) bytes in all")
        // Every checkpoint's chain restores to the disk as it was at that checkpoint.
        for (round, image) in images.enumerated() {
            let restored = f.dir.file("restored-\(round).raw")
            try BackupVM.must([qemu.img, "convert", "-f", "qcow2", "-O", "raw", "\(f.backupDirectory)/\(image)", restored])
            #expect(filesEqual(references[round], restored), "checkpoint \(round) (\(image)) differs from the paused disk")
        }
        let viaSwiftnbd = f.dir.file("restored-swiftnbd.raw")
        let copy = try run([Peers.swiftnbd, "copy", "--no-progress", "\(f.backupDirectory)/\(images[2])", viaSwiftnbd])
        #expect(copy.succeeded, "\(copy)")
        #expect(filesEqual(references[2], viaSwiftnbd))
        let dataRestored = f.dir.file("vdb-restored.raw")
        try BackupVM.must([qemu.img, "convert", "-f", "qcow2", "-O", "raw", "\(f.backupDirectory)/vdb-format/0002-incremental.qcow2", dataRestored])
        #expect(filesEqual(dataReference, dataRestored))
        #expect(try run([qemu.img, "check", "-q", "\(f.backupDirectory)/\(images[2])"]).succeeded)

        let manifestPath = "\(f.backupDirectory)/manifest.json"
        let manifest = try QMPValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: manifestPath))))
        let checkpoints = manifest["checkpoints"]?.arrayValue ?? []
        #expect(checkpoints.map { $0["kind"]?.stringValue ?? "" } == ["full", "incremental", "incremental"])
        let chain = try #require(manifest["chain"]?.stringValue)
        let latest = "swiftnbd-\(chain)-2"
        // QEMU keeps only the latest checkpoint's bitmap, recording, on each disk.
        #expect(try f.bitmaps("vda-format").keys.sorted() == [latest])
        #expect(try f.bitmaps("vdb-format")[latest]?.recording == true)

        // A run that fails after QEMU was set up undoes all of it and leaves the chain as it was.
        let obstacle = "\(f.backupDirectory)/vda-format/0003-incremental.qcow2.part"
        try FileManager.default.createDirectory(atPath: obstacle, withIntermediateDirectories: true)
        let manifestBefore = try Data(contentsOf: URL(fileURLWithPath: manifestPath))
        let failed = try f.backup()
        #expect(!failed.succeeded)
        #expect(failed.stderr.contains("backup failed"), "\(failed)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: manifestPath)) == manifestBefore)
        let nodes = try f.vm.qmp.execute("query-named-block-nodes", ["flat": true]).arrayValue ?? []
        #expect(!nodes.contains { ($0["node-name"]?.stringValue ?? "").hasPrefix("swiftnbd-") }, "\(nodes)")
        #expect(try f.vm.qmp.execute("query-block-jobs").arrayValue?.isEmpty == true)
        #expect(try f.vm.qmp.execute("query-block-exports").arrayValue?.isEmpty == true)
        let afterFailure = try f.bitmaps("vda-format")
        #expect(afterFailure.keys.sorted() == [latest] && afterFailure[latest]?.recording == true, "\(afterFailure)")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: f.backupDirectory).filter { $0.hasPrefix(".fleece") }
        #expect(leftovers.isEmpty, "\(leftovers)")
        try FileManager.default.removeItem(atPath: obstacle)
        // The merged-back bitmap still covers every write since checkpoint 2.
        let (retry, retryReference) = try Self.checkpoint(f, round: 3)
        try #require(retry.succeeded, "\(retry)\nqemu:\n\(f.vm.process.log)")
        let retryImage = try #require(Self.disk(try Self.report(retry), "vda-format")?["image"]?.stringValue)
        let retryRestored = f.dir.file("restored-3.raw")
        try BackupVM.must([qemu.img, "convert", "-f", "qcow2", "-O", "raw", "\(f.backupDirectory)/\(retryImage)", retryRestored])
        #expect(filesEqual(retryReference, retryRestored))

        // Refusals: a checkpoint bitmap of another granularity, then one QEMU lost.
        let current = "swiftnbd-\(chain)-3"
        try f.vm.qmp.execute("block-dirty-bitmap-remove", ["node": "vda-format", "name": .string(current)])
        try f.vm.qmp.execute("block-dirty-bitmap-add", ["node": "vda-format", "name": .string(current), "persistent": true,
                                                        "granularity": 131072])
        let granularity = try f.backup()
        #expect(!granularity.succeeded)
        #expect(granularity.stderr.contains("has granularity 131072 bytes, but checkpoint 3 was made with 65536"), "\(granularity)")
        try f.vm.qmp.execute("block-dirty-bitmap-remove", ["node": "vda-format", "name": .string(current)])
        let lost = try f.backup()
        #expect(!lost.succeeded)
        #expect(lost.stderr.contains("checkpoint 3 is lost: disk vda-format has no bitmap '\(current)'"), "\(lost)")
        let incrementalOnly = try f.backup(["--incremental"], directory: f.dir.file("empty"))
        #expect(incrementalOnly.stderr.contains("holds no backup chain yet"), "\(incrementalOnly)")
        let unknownNode = try f.backup(disks: ["nosuch"])
        #expect(unknownNode.stderr.contains("the VM has no block node 'nosuch'"), "\(unknownNode)")
        let otherDisks = try f.backup(disks: ["vda-format"])
        #expect(otherDisks.stderr.contains("backs up disks vda-format, vdb-format, but this run names vda-format"), "\(otherDisks)")
        // After the refusals a full backup (--full) starts over and QEMU holds its one bitmap.
        let fresh = try f.backup(["--full"])
        #expect(fresh.succeeded, "\(fresh)")
        #expect(try f.bitmaps("vda-format").keys.sorted() == ["swiftnbd-\(chain)-4"])
    }

    @Test("a backup directory of another VM and the leftovers of an unfinished backup are refused", .enabled(if: tools), .timeLimit(.minutes(2)))
    func directoryOfAnotherVM() throws {
        let first = try BackupVM("owner", name: "owner", qemu: .debian, guest: false)
        defer { first.shutdown() }
        let full = try first.backup()
        try #require(full.succeeded, "\(full)\n\(first.vm.process.log)")
        let other = try BackupVM("stranger", name: "stranger", qemu: .debian, guest: false)
        defer { other.shutdown() }
        let refused = try other.backup(directory: first.backupDirectory)
        #expect(!refused.succeeded)
        #expect(refused.stderr.contains("holds backups of VM 'owner'"), "\(refused)")
        #expect(refused.stderr.contains("not of this VM 'stranger'"), "\(refused)")
        // Nothing was set up in the stranger.
        #expect(try other.bitmaps("vda-format").isEmpty)

        // Objects named like a backup's (one killed before its cleanup) are not touched: refused.
        try first.vm.qmp.execute("blockdev-add", ["driver": "null-co", "node-name": "swiftnbd-fleece-0", "size": 1048576])
        let leftover = try first.backup()
        #expect(!leftover.succeeded)
        #expect(leftover.stderr.contains("the VM holds node swiftnbd-fleece-0 of a backup that has not finished"), "\(leftover)")
        try first.vm.qmp.execute("blockdev-del", ["node-name": "swiftnbd-fleece-0"])
        let after = try first.backup()
        #expect(after.succeeded, "\(after)")
    }

    @Test("checkpoints survive a clean QEMU restart: the next incremental copies exactly what was written",
          .enabled(if: tools), .timeLimit(.minutes(2)), arguments: QEMUGeneration.all)
    func restart(qemu: QEMUGeneration) throws {
        let f = try BackupVM("restart", qemu: qemu, guest: false)
        defer { f.shutdown() }
        let full = try f.backup()
        try #require(full.succeeded, "\(full)\n\(f.vm.process.log)")
        try f.restart()
        let bitmaps = try f.bitmaps("vda-format")
        #expect(bitmaps.count == 1 && bitmaps.values.first?.recording == true, "\(bitmaps)")
        try f.guestWrite("write -P 0x5c 3M 192k")
        try f.guestWrite("write -z 40M 1M")
        let incremental = try f.backup()
        try #require(incremental.succeeded, "\(incremental)\n\(f.vm.process.log)")
        let report = try Self.report(incremental)
        let vda = try #require(Self.disk(report, "vda-format"))
        #expect(vda["bytesRead"]?.intValue == 192 << 10, "\(vda)")
        #expect(vda["bytesZeroed"]?.intValue == 1 << 20, "\(vda)")
        #expect(Self.disk(report, "vdb-format")?["bytesRead"]?.intValue == 0)
        let image = try #require(vda["image"]?.stringValue)
        f.shutdown()
        let compare = try run([qemu.img, "compare", "-f", "qcow2", "-F", "qcow2", f.disk, "\(f.backupDirectory)/\(image)"])
        #expect(compare.succeeded, "\(compare)")
    }
}
