#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import NBDClient
import QMP

/// `swiftnbd backup`: pull-mode full and incremental backups of a running QEMU VM over QMP,
/// without libvirt. See docs/backup.md.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up a running QEMU VM's disks (full, then incremental) over QMP and NBD+TLS.",
        discussion: """
            Each run takes one checkpoint of the given disks at one instant while the guest keeps running: \
            QEMU keeps a point-in-time view of each disk (fleecing with a copy-before-write job), exports it \
            with TLS from its own NBD server, and this command copies it. The first run into a directory is a \
            full backup; later runs copy only what QEMU's persistent checkpoint bitmap recorded since the \
            previous run, into a qcow2 overlay of the previous backup. Disks must be qcow2 nodes (QEMU keeps \
            persistent bitmaps in qcow2 images). A failed run undoes its QEMU side and leaves earlier backups intact.

            Restore any checkpoint with qemu-img convert or swiftnbd copy from its image in DIR/NODE/.

            Example:
              swiftnbd backup --qmp /run/vm.qmp --disk vda-format --tls-certificates /etc/pki/qemu /backups/vm
            """)

    @Argument(help: ArgumentHelp("The backup directory (created by the first, full, backup).", valueName: "dir"))
    var directory: String

    @Option(help: ArgumentHelp("QMP Unix socket of the running QEMU.", valueName: "path"))
    var qmp: String

    @Option(name: .customLong("disk"), help: ArgumentHelp("Block node of a disk to back up (repeatable; a qcow2 format node).", valueName: "node"))
    var disks: [String] = []

    @Option(name: .customLong("tls-certificates"), help: ArgumentHelp(
        "x509 directory in QEMU's layout (ca-cert.pem, server-cert.pem, server-key.pem for QEMU's NBD server; client-cert.pem, client-key.pem for this command).",
        valueName: "dir"))
    var tlsCertificates: String

    @Option(name: .customLong("tls-creds"), help: ArgumentHelp(
        "Id of an existing tls-creds-x509 (endpoint=server) object in QEMU; default: create one from --tls-certificates with verify-peer.", valueName: "id"))
    var tlsCreds: String?

    @Option(name: .customLong("tls-hostname"), help: ArgumentHelp("Name to check QEMU's server certificate against.", valueName: "name"))
    var tlsHostname = "localhost"

    @Flag(help: "Take a full backup even when the directory holds a chain (starts a new chain of checkpoints).")
    var full = false

    @Flag(help: "Refuse to run unless this is an incremental backup.")
    var incremental = false

    @Option(help: ArgumentHelp("Granularity of new checkpoint bitmaps in bytes (default: QEMU's choice, the qcow2 cluster size).", valueName: "bytes"))
    var granularity: UInt64?

    @Option(name: .customLong("scratch-dir"), help: ArgumentHelp("Where QEMU keeps the fleecing overlays during the backup (default: the backup directory).", valueName: "dir"))
    var scratchDirectory: String?

    @Option(help: ArgumentHelp("Time limit in seconds for each QEMU step.", valueName: "seconds"))
    var timeout: Double = 60

    @Option(help: "Connections per disk export.")
    var connections: Int = 4

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log each step to stderr.")
    var verbose = false

    func validate() throws {
        guard !disks.isEmpty else { throw ValidationError("give at least one --disk node") }
        for node in disks where !Self.isNodeName(node) {
            throw ValidationError("'\(node)' is not a QEMU node name (a letter, then letters, digits, '-', '.', '_'; at most 31)")
        }
        guard Set(disks).count == disks.count else { throw ValidationError("a --disk is given twice") }
        if full && incremental { throw ValidationError("--full and --incremental exclude each other") }
        if let granularity, granularity < 512 || granularity > 1 << 31 || granularity & (granularity - 1) != 0 {
            throw ValidationError("--granularity must be a power of two from 512 B to 2 GiB")
        }
        guard connections >= 1, connections <= 64 else { throw ValidationError("--connections must be between 1 and 64") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tlsCertificates, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("--tls-certificates \(tlsCertificates) is not a directory")
        }
    }

    /// QEMU's rule for node names (they become directory names here, so it matters).
    static func isNodeName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 31,
              CharacterSet.letters.contains(first), first.isASCII else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-._".unicodeScalars.contains($0)) }
    }

    func run() throws {
        let started = Date()
        let report: BackupReport
        do {
            report = try BackupRun(command: self).run(started: started)
        } catch let error as BackupFailure {
            throw CopyExit(message: "backup failed: \(error.description)")
        } catch let error as QMPError {
            throw CopyExit(message: "backup failed: \(error.description)")
        } catch let error as CopyFailure {
            throw CopyExit(message: "backup failed: \(error.description)")
        } catch let error as CopyExit {
            throw CopyExit(message: "backup failed: \(error.message)")
        } catch {
            throw CopyExit(message: "backup failed: \(error)")
        }
        print(json ? report.json : report.text, terminator: "")
    }
}
