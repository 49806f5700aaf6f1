import BlockDevices
import Foundation
import Testing
@testable import Qcow2

/// Random corruption of a real image's metadata: opening, reading, block status and writing
/// must either work or throw a `BlockDeviceError` — never trap or hang.
@Suite("qcow2 metadata fuzzing")
struct Qcow2FuzzTests {
    static let rounds = Int(ProcessInfo.processInfo.environment["QCOW2_FUZZ_ROUNDS"] ?? "") ?? 300
    static let seed = UInt64(ProcessInfo.processInfo.environment["QCOW2_FUZZ_SEED"] ?? "") ?? 2026

    struct Rng: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    /// A small image with data, zero clusters and two L2 tables, as bytes.
    static func sampleImage(in dir: String) throws -> [UInt8] {
        let path = dir + "/sample.qcow2"
        try Qcow2Creator.create(at: path, options: Qcow2CreateOptions(size: 2 << 20, clusterSize: 4096))
        let image = try Qcow2Image(path: path)
        let data = [UInt8](repeating: 0x5A, count: 10_000)
        try data.withUnsafeBytes { try image.write($0, at: 3000, fua: false) }
        try data.withUnsafeBytes { try image.write($0, at: 1_500_000, fua: false) }
        try image.writeZeroes(offset: 65536, length: 8192, mayTrim: true, fastOnly: false, fua: false)
        try image.close()
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    @Test("randomly corrupted metadata is refused or read, never a crash")
    func fuzzMetadata() throws {
        let dir = NSTemporaryDirectory() + "qcow2-fuzz-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let original = try Self.sampleImage(in: dir)
        // Metadata lives in the first clusters (header, refcount table/block, L1) and the L2 tables.
        let metadataEnd = min(original.count, 8 * 4096)
        var rng = Rng(state: Self.seed)
        var opened = 0, refused = 0
        for round in 0..<Self.rounds {
            var bytes = original
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let i = Int.random(in: 0..<metadataEnd, using: &rng)
                bytes[i] = round % 3 == 0 ? 0xFF : UInt8.random(in: 0...255, using: &rng)
            }
            if round % 5 == 1 { bytes[79] |= 1 }  // dirty bit: a read-write open rebuilds refcounts
            let path = dir + "/fuzz.qcow2"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let image = try Qcow2Image(path: path, readOnly: round % 2 == 0)
                opened += 1
                var buffer = [UInt8](repeating: 0, count: 65536)
                var offset: UInt64 = 0
                while offset < min(image.size, 4 << 20) {
                    let n = Int(min(UInt64(buffer.count), image.size - offset))
                    _ = try? buffer.withUnsafeMutableBytes { try image.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: offset) }
                    offset += UInt64(n)
                }
                if image.size > 0 {
                    _ = try? image.extents(offset: 0, length: image.size)
                    _ = try? image.allocationDepth(offset: 0, length: image.size)
                }
                if round % 2 == 1 && image.size > 20_000 {
                    let data = [UInt8](repeating: 1, count: 5000)
                    _ = try? data.withUnsafeBytes { try image.write($0, at: 7000, fua: false) }
                    _ = try? image.writeZeroes(offset: 0, length: min(image.size, 8192), mayTrim: true, fastOnly: false, fua: false)
                    _ = try? image.trim(offset: 0, length: min(image.size, 16384), fua: false)
                }
                try? image.close()
            } catch is BlockDeviceError {
                refused += 1
            }
        }
        #expect(opened + refused == Self.rounds)
        #expect(refused > 0)
    }
}
