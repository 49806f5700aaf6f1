import Foundation
import QMP

/// One qemu-system-x86_64 process for the migration tests: the cheap boot-sector VM of
/// docs/migration.md §7 (SeaBIOS, one virtio-blk disk, debugcon on 0x402, QMP on a Unix
/// socket). Stopped by PID when released.
final class MigrationVM: @unchecked Sendable {
    let name: String
    let process: ServerProcess
    let qmp: QMPClient
    let debugconPath: String
    let qmpPath: String
    /// A second monitor, for `swiftnbd migrate` (QEMU serves one client per monitor socket).
    let commandQMPPath: String

    /// `-accel kvm -cpu qemu64,-pni` when /dev/kvm can be opened, else TCG with `qemu64`. Both
    /// VMs of a migration must use the same. `SWIFTNBD_MIGRATION_ACCEL=tcg` forces TCG.
    static let accelerator: [String] = {
        if ProcessInfo.processInfo.environment["SWIFTNBD_MIGRATION_ACCEL"] != "tcg" {
            let fd = open("/dev/kvm", O_RDWR)
            if fd >= 0 {
                close(fd)
                return ["-accel", "kvm", "-cpu", "qemu64,-pni"]
            }
        }
        return ["-accel", "tcg", "-cpu", "qemu64"]
    }()

    /// - Parameters:
    ///   - disk: an image opened as node `vda-storage`/`vda-format`; nil for a disk-less VM.
    ///   - diskFormat: the format driver of `vda-format` (raw or qcow2).
    ///   - dataDisk: a second disk the guest does not touch, as node `vdb-format`.
    ///   - tls: the x509 directory and this VM's endpoint for object `tls0`, or nil.
    ///   - incoming: start paused with `-S -incoming defer` (the destination).
    ///   - qemu: which QEMU generation runs the VM.
    init(name: String, in dir: TempDir, disk: String?, diskFormat: String = "raw",
         dataDisk: (path: String, format: String)? = nil, tls: (dir: String, endpoint: String)?,
         incoming: Bool, paused: Bool = false, machine: String = "pc", qemu: QEMUGeneration = .debian) throws {
        self.name = name
        qmpPath = dir.file("\(name).qmp")
        commandQMPPath = dir.file("\(name)-cmd.qmp")
        debugconPath = dir.file("\(name)-debugcon.log")
        var args = [qemu.system, "-name", name, "-machine", machine] + MigrationVM.accelerator + [
            "-m", "128", "-nodefaults", "-no-user-config", "-display", "none",
        ] + QEMUTestProcess.monitors(qmpPath, commandQMPPath)
        if let tls { args += QEMUTestProcess.tlsObject(dir: tls.dir, endpoint: tls.endpoint) }
        if let disk {
            args += QEMUTestProcess.disk(disk, format: diskFormat, id: "vda", bootindex: 1)
            args += ["-chardev", "file,id=dbg,path=\(debugconPath)", "-device", "isa-debugcon,iobase=0x402,chardev=dbg"]
        }
        if let dataDisk { args += QEMUTestProcess.disk(dataDisk.path, format: dataDisk.format, id: "vdb") }
        if incoming { args += ["-S", "-incoming", "defer"] } else if paused { args += ["-S"] }
        (process, qmp) = try QEMUTestProcess.start(name: name, args, qmpPath: qmpPath)
    }

    /// The debugcon output so far (SeaBIOS messages, then one '.' per guest pass).
    var debugcon: String {
        (try? String(contentsOfFile: debugconPath, encoding: .isoLatin1)) ?? ""
    }

    /// Waits until the boot-sector guest has printed its "BMIG" banner and then `passes` dots
    /// (one per pass over its 16 MiB region).
    func waitForGuest(passes: Int = 0, timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let log = debugcon
            if let range = log.range(of: "BMIG\n") {
                if log[range.upperBound...].filter({ $0 == "." }).count >= passes { return }
            }
            if !process.isRunning { break }
            usleep(50_000)
        }
        throw MigrationTestFailure("\(name): guest did not complete \(passes) pass(es) in \(timeout) s; debugcon:\n\(debugcon)\nqemu log:\n\(process.log)")
    }

    /// Asks QEMU to quit, then stops the process by PID.
    func shutdown() { QEMUTestProcess.shutdown(process, qmp) }

    deinit {
        if process.isRunning { shutdown() }
    }
}

struct MigrationTestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
