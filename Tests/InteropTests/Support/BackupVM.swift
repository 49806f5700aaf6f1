import Foundation
import QMP

/// The backup tests' VM: the migration fixtures' boot-sector guest (it keeps writing to
/// [1 MiB, 17 MiB) of its disk) on a qcow2 disk `vda-format`, plus a qcow2 data disk
/// `vdb-format` the guest never touches; TLS object `tls0` (server, verify-peer).
final class BackupVM: @unchecked Sendable {
    static let diskSize = 128 << 20
    static let dataDiskSize = 32 << 20

    let dir: TempDir
    let pki: MigrationPKI
    let qemu: QEMUGeneration
    let disk: String
    let dataDisk: String
    private(set) var vm: MigrationVM
    let backupDirectory: String
    private let name: String
    private let guest: Bool

    init(_ label: String, name: String = "backup-guest", qemu: QEMUGeneration, guest: Bool = true) throws {
        self.qemu = qemu
        self.name = name
        self.guest = guest
        pki = try MigrationPKI.shared.get()
        dir = TempDir("backup-\(label)-\(qemu.name)")
        disk = dir.file("vda.qcow2")
        dataDisk = dir.file("vdb.qcow2")
        backupDirectory = dir.file("backups")
        let raw = dir.file("vda.raw")
        // 96 MiB of seeded data (the guest's region included), the rest never written.
        try makePatternFile(raw, size: 96 << 20, seed: 5)
        if guest {
            let boot = try Data(contentsOf: URL(fileURLWithPath: MigrationDisks.bootSectorPath))
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: raw))
            try handle.write(contentsOf: boot)
            try handle.close()
        }
        try Self.must([qemu.img, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, disk])
        try Self.must([qemu.img, "resize", "-q", "-f", "qcow2", disk, String(Self.diskSize)])
        unlink(raw)
        let dataRaw = dir.file("vdb.raw")
        try makePatternFile(dataRaw, size: 8 << 20, seed: 6)
        try Self.must([qemu.img, "convert", "-q", "-f", "raw", "-O", "qcow2", dataRaw, dataDisk])
        try Self.must([qemu.img, "resize", "-q", "-f", "qcow2", dataDisk, String(Self.dataDiskSize)])
        unlink(dataRaw)
        vm = try MigrationVM(name: name, in: dir, disk: disk, diskFormat: "qcow2", dataDisk: (dataDisk, "qcow2"),
                             tls: (pki.trusted, "server"), incoming: false, paused: !guest, qemu: qemu)
    }

    static func must(_ arguments: [String]) throws {
        let result = try run(arguments)
        guard result.succeeded else { throw MigrationTestFailure("\(arguments.joined(separator: " ")): \(result)") }
    }

    /// `swiftnbd backup` on the VM's second monitor.
    func backup(_ extra: [String] = [], disks: [String] = ["vda-format", "vdb-format"], directory: String? = nil) throws -> RunResult {
        try withUnblockedSignals {
            try run([Peers.swiftnbd, "backup", "--qmp", vm.commandQMPPath, "--tls-certificates", pki.trusted, "--json", "--verbose"]
                    + disks.flatMap { ["--disk", $0] } + extra + [directory ?? backupDirectory], timeout: 120)
        }
    }

    /// The disk as the paused VM has it: `stop` drains and flushes every block node, so the
    /// qcow2 file is complete and a shared read (-U) sees what the guest sees.
    func reference(_ image: String, into path: String) throws {
        try Self.must([qemu.img, "convert", "-U", "-f", "qcow2", "-O", "raw", image, path])
    }

    /// Dots the guest has printed (one per pass over its region).
    var passes: Int {
        let log = vm.debugcon
        guard let range = log.range(of: "BMIG\n") else { return 0 }
        return log[range.upperBound...].filter { $0 == "." }.count
    }

    /// The node's dirty bitmaps as QEMU lists them: name → (recording, granularity).
    func bitmaps(_ node: String) throws -> [String: (recording: Bool, granularity: Int64)] {
        let nodes = try vm.qmp.execute("query-named-block-nodes", ["flat": true]).arrayValue ?? []
        var result: [String: (Bool, Int64)] = [:]
        for item in nodes where item["node-name"]?.stringValue == node {
            for bitmap in item["dirty-bitmaps"]?.arrayValue ?? [] {
                if let name = bitmap["name"]?.stringValue {
                    result[name] = (bitmap["recording"]?.boolValue ?? false, bitmap["granularity"]?.intValue ?? 0)
                }
            }
        }
        return result
    }

    func shutdown() { vm.shutdown() }

    /// Quits QEMU cleanly (it stores the persistent bitmaps in the qcow2 images) and starts it
    /// again on the same disks.
    func restart() throws {
        vm.shutdown()
        vm = try MigrationVM(name: name, in: dir, disk: disk, diskFormat: "qcow2", dataDisk: (dataDisk, "qcow2"),
                             tls: (pki.trusted, "server"), incoming: false, paused: !guest, qemu: qemu)
    }

    /// Writes through the guest's own device (HMP qemu-io on its BlockBackend), so the
    /// checkpoint bitmaps see it as a guest write.
    func guestWrite(_ command: String) throws {
        let out = try vm.qmp.execute("human-monitor-command",
                                     ["command-line": .string("qemu-io -d /machine/peripheral/vda/virtio-backend \"\(command)\"")])
        guard (out.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw MigrationTestFailure("qemu-io \(command): \(out)")
        }
    }
}

/// Runs `body` on its own thread; `wait` returns its result.
final class BackgroundRun: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<RunResult, Error>?

    init(_ body: @escaping @Sendable () throws -> RunResult) {
        let thread = Thread { [self] in
            result = Result { try body() }
            done.signal()
        }
        thread.start()
    }

    func wait(timeout: Double = 180) throws -> RunResult {
        guard done.wait(timeout: .now() + timeout) == .success, let result else {
            throw MigrationTestFailure("background command did not finish in \(timeout) s")
        }
        return try result.get()
    }
}
