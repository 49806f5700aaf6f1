import Foundation

/// Disk images for the migration tests (docs/migration.md §7): a source with seeded
/// pseudo-random data, known regions and the boot-sector guest in sector 0; a destination
/// pre-filled with junk so a copy that skips or loses data shows up.
enum MigrationDisks {
    static let size = 256 << 20

    static var bootSectorPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/migration/boot-sector.bin").path
    }

    static func makeSource(_ path: String, size: Int = size) throws {
        try makePatternFile(path, size: size, seed: 7)
        let io = try run(["qemu-io", "-f", "raw", "-c", "write -P 0xa5 64M 1M", "-c", "write -P 0x5a 128M 1M",
                          "-c", "write -z -u 224M 32M", path])
        guard io.succeeded else { throw MigrationTestFailure("qemu-io on \(path): \(io)") }
        let boot = try Data(contentsOf: URL(fileURLWithPath: bootSectorPath))
        guard boot.count == 512, boot[510] == 0x55, boot[511] == 0xAA else {
            throw MigrationTestFailure("\(bootSectorPath) is not a 512-byte boot sector")
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.write(contentsOf: boot)
        try handle.close()
    }

    static func makeJunkDestination(_ path: String, size: Int = size) throws {
        try Data(repeating: 0xEE, count: size).write(to: URL(fileURLWithPath: path))
    }

    /// `qemu-io -U -r` reads of the known regions (docs/migration.md §7).
    static func checkKnownRegions(_ path: String) throws -> RunResult {
        try run(["qemu-io", "-U", "-r", "-f", "raw", "-c", "read -P 0xa5 64M 1M", "-c", "read -P 0x5a 128M 1M",
                 "-c", "read -P 0 224M 32M", path])
    }
}
