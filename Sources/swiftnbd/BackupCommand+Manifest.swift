#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// `manifest.json` of a backup directory: which VM and disks it belongs to, and every
/// checkpoint taken, in order. The images themselves are a plain qcow2 chain per disk
/// (`NODE/0000-full.qcow2` ← `NODE/0001-incremental.qcow2` ← …); the manifest is what tells the
/// next run which QEMU bitmap continues the chain. It is replaced atomically after all images
/// of a checkpoint are in place, so a failed run never leaves a checkpoint half-recorded.
struct BackupManifest: Codable, Equatable {
    static let formatName = "swiftnbd-backup"
    static let fileName = "manifest.json"

    var format: String = formatName
    var version: Int = 1
    /// Random, chosen with the directory; part of every bitmap name so that two backup
    /// directories of one VM never use each other's checkpoints.
    var chain: String
    var vm: VMIdentity
    var disks: [Disk]
    var checkpoints: [Checkpoint] = []

    struct VMIdentity: Codable, Equatable {
        var name: String
        var uuid: String
    }

    struct Disk: Codable, Equatable {
        var node: String
        var size: UInt64
    }

    struct Checkpoint: Codable, Equatable {
        var sequence: Int
        /// "full" or "incremental".
        var kind: String
        /// The QEMU dirty bitmap that records guest writes from this checkpoint on.
        var bitmap: String
        var started: String
        var finished: String
        var seconds: Double
        var disks: [DiskImage]
    }

    struct DiskImage: Codable, Equatable {
        var node: String
        /// Relative to the backup directory.
        var image: String
        /// The image under it (relative to the backup directory), nil for a full backup.
        var backing: String?
        var granularity: UInt64
        var bytesRead: UInt64
        var bytesWritten: UInt64
        var bytesZeroed: UInt64
        var bytesSkipped: UInt64
        var seconds: Double
    }

    static func bitmapName(chain: String, sequence: Int) -> String { "swiftnbd-\(chain)-\(sequence)" }

    static func imageName(node: String, sequence: Int, kind: String) -> String {
        "\(node)/" + String(format: "%04d", sequence) + "-\(kind).qcow2"
    }

    static func load(directory: String) throws -> BackupManifest? {
        let path = directory + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let manifest: BackupManifest
        do {
            manifest = try JSONDecoder().decode(BackupManifest.self, from: data)
        } catch {
            throw BackupFailure("\(path) is not a swiftnbd backup manifest: \(error)")
        }
        guard manifest.format == formatName, manifest.version == 1 else {
            throw BackupFailure("\(path) is a manifest of format \(manifest.format) version \(manifest.version); this swiftnbd reads \(formatName) version 1")
        }
        return manifest
    }

    /// Writes a temporary file, syncs it and renames it over the old manifest.
    func save(directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(self)
        let path = directory + "/" + Self.fileName
        let temporary = path + ".tmp"
        try data.write(to: URL(fileURLWithPath: temporary))
        let fd = open(temporary, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        guard rename(temporary, path) == 0 else {
            throw BackupFailure("cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}

/// A backup failure with one clear sentence.
struct BackupFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
