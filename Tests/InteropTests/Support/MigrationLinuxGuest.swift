import Foundation
import QMP

/// The Linux guest of the migration-under-load tests: Debian's cloud kernel with an
/// initramfs whose init runs a RAM dirtier (scripts/build-linux-guest.sh,
/// Fixtures/migration/linux-guest/). Built once per test run into a cache directory
/// ($SWIFTNBD_LINUX_GUEST_DIR, else ~/.cache/swiftnbd/linux-guest); nothing is committed.
enum MigrationLinuxGuest {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static let built: Result<String, Error> = Result {
        let result = try run(["bash", "\(repositoryRoot)/scripts/build-linux-guest.sh"], timeout: 300)
        guard result.succeeded, let dir = result.stdout.split(separator: "\n").last.map(String.init) else {
            throw MigrationTestFailure("build-linux-guest.sh failed: \(result)")
        }
        return dir
    }

    static func directory() throws -> String { try built.get() }
}

/// What the dirtier printed on the console: its latest progress line and any memory mismatch.
struct LinuxGuestConsole: CustomStringConvertible {
    var sequence: Int = 0
    var pass: Int = 0
    var errors: Int = 0
    var mismatches: [String] = []
    var description: String { "seq \(sequence), pass \(pass), memory errors \(errors), mismatch lines \(mismatches.count)" }

    init(_ text: String) {
        for line in text.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("LMIG MEMORY MISMATCH") { mismatches.append(String(line)); continue }
            guard line.hasPrefix("LMIG seq=") else { continue }
            var fields: [String: Int] = [:]
            for word in line.split(separator: " ") {
                let parts = word.split(separator: "=", maxSplits: 1)
                if parts.count == 2, let value = Int(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) { fields[String(parts[0])] = value }
            }
            sequence = fields["seq"] ?? sequence
            pass = fields["pass"] ?? pass
            errors = fields["errors"] ?? errors
        }
    }
}

/// The dirtier's progress records on its disk (see dirtier.c): "LMIG", seq, own LBA, ~seq,
/// pad, pass, memory errors; one per 250 ms at LBA 2048 + seq % 30720.
struct LinuxGuestDiskRecords: CustomStringConvertible {
    static let firstLBA = 2048
    static let slots = 30720
    /// seq by LBA, for the valid records.
    var sequenceByLBA: [Int: UInt32] = [:]
    var corrupt = 0
    var maxErrors: UInt64 = 0
    var maxSequence: UInt32 { sequenceByLBA.values.max() ?? 0 }
    var description: String { "\(sequenceByLBA.count) records, highest seq \(maxSequence), \(corrupt) corrupt, memory errors \(maxErrors)" }

    static func scan(_ path: String) throws -> LinuxGuestDiskRecords {
        var records = LinuxGuestDiskRecords()
        for sector in try GuestSectorTag.scan(path, magic: 0x4749_4D4C, lbas: firstLBA..<(firstLBA + slots)) {
            guard sector.valid else { records.corrupt += 1; continue }
            records.sequenceByLBA[sector.lba] = sector.counter
            records.maxErrors = max(records.maxErrors, sector.word32)
        }
        return records
    }

    /// Records of `earlier` that `self` lost or went back on (same LBA, lower seq).
    func regressions(from earlier: LinuxGuestDiskRecords) -> [Int] {
        earlier.sequenceByLBA.compactMap { lba, seq in
            guard let now = sequenceByLBA[lba] else { return lba }
            return now >= seq ? nil : lba
        }.sorted()
    }
}

/// One qemu-system-x86_64 running the Linux guest under TCG (the Debian kernel needs it on
/// hosts where only the tiny boot-sector guest works with KVM), with its disk as node
/// `vda-format`, the console in a file, TLS object `tls0` and two QMP sockets.
final class LinuxMigrationVM: @unchecked Sendable {
    let name: String
    let process: ServerProcess
    let qmp: QMPClient
    let consolePath: String
    let commandQMPPath: String

    init(name: String, in dir: TempDir, disk: String, tls: (dir: String, endpoint: String), incoming: Bool,
         memoryMiB: Int = 256, workingSetMiB: Int, dirtyRateMiB: Int, qemu: QEMUGeneration = .debian) throws {
        self.name = name
        let guest = try MigrationLinuxGuest.directory()
        let qmpPath = dir.file("\(name).qmp")
        commandQMPPath = dir.file("\(name)-cmd.qmp")
        consolePath = dir.file("\(name)-console.log")
        var args = [qemu.system, "-name", name, "-machine", "pc", "-accel", "tcg", "-cpu", "qemu64",
                    "-m", String(memoryMiB), "-nodefaults", "-no-user-config", "-display", "none",
                    "-kernel", "\(guest)/vmlinuz", "-initrd", "\(guest)/initramfs.cpio.gz",
                    "-append", "console=ttyS0 quiet lmig.mib=\(workingSetMiB) lmig.rate=\(dirtyRateMiB)",
                    "-serial", "file:\(consolePath)"]
        args += QEMUTestProcess.monitors(qmpPath, commandQMPPath)
        args += QEMUTestProcess.tlsObject(dir: tls.dir, endpoint: tls.endpoint)
        args += QEMUTestProcess.disk(disk, format: "raw", id: "vda")
        if incoming { args += ["-S", "-incoming", "defer"] }
        (process, qmp) = try QEMUTestProcess.start(name: name, args, qmpPath: qmpPath)
    }

    var console: LinuxGuestConsole {
        LinuxGuestConsole((try? String(contentsOfFile: consolePath, encoding: .isoLatin1)) ?? "")
    }

    var consoleText: String { (try? String(contentsOfFile: consolePath, encoding: .isoLatin1)) ?? "" }

    /// Waits until the dirtier has printed a progress line with seq > `sequence`.
    @discardableResult
    func waitForProgress(beyond sequence: Int = 0, timeout: Double = 60) throws -> LinuxGuestConsole {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let now = console
            if now.sequence > sequence { return now }
            if !process.isRunning { break }
            usleep(100_000)
        }
        throw MigrationTestFailure("\(name): no guest progress beyond seq \(sequence) in \(timeout) s; console:\n\(consoleText.suffix(2000))\nqemu log:\n\(process.log)")
    }

    func shutdown() { QEMUTestProcess.shutdown(process, qmp) }

    deinit {
        if process.isRunning { shutdown() }
    }
}
