import BlockDevices
import Foundation
import Testing
import TestSupport
@testable import Qcow2

/// Seeded random operations on a qcow2 image opened with the smallest caches (4 L2 slices, 2
/// refcount slices), checked against a sparse reference model after every read and again after
/// reopening. Threads work on disjoint ranges at once, so allocation, eviction and write-back
/// of queued entries interleave. A failure names its seed; add it to `seeds` to replay.
@Suite("qcow2 driver against a reference model (tiny caches)")
struct Qcow2ModelTests {
    static let tiny = Qcow2CacheOptions(l2CacheBytes: 1, refcountCacheBytes: 1)
    static let seeds: [UInt64] = [1, 2, 3, UInt64.random(in: 4...UInt64(Int32.max))]

    @Test("random writes, zeroes, trims and flushes over a large sparse image", arguments: [
        (UInt64(1) << 40, UInt64(65536)), (UInt64(8) << 30, UInt64(4096)), (UInt64(256) << 20, UInt64(512)),
    ] as [(UInt64, UInt64)])
    func randomOperations(size: UInt64, clusterSize: UInt64) throws {
        for seed in Self.seeds {
            try runCase(seed: seed, size: size, clusterSize: clusterSize)
        }
    }

    func runCase(seed: UInt64, size: UInt64, clusterSize: UInt64) throws {
        let dir = NSTemporaryDirectory() + "qcow2-model-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/m.qcow2"
        try Qcow2Creator.create(at: path, options: Qcow2CreateOptions(size: size, clusterSize: clusterSize))
        let label = "seed \(seed), size \(size), cluster \(clusterSize)"
        let model = SparseModel()
        do {
            let image = try Qcow2Image(path: path, cache: Self.tiny)
            // Four workers, each on its own quarter of the disk: no two requests overlap.
            let quarter = size / 4 / clusterSize * clusterSize
            let failures = FailureLog()
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                var rng = SplitMix64(seed: seed &* 1000 &+ UInt64(worker))
                let base = UInt64(worker) * quarter
                do {
                    for step in 0..<400 {
                        try Self.step(&rng, image: image, model: model, base: base, span: quarter, cluster: clusterSize)
                        if failures.any { return }
                        _ = step
                    }
                } catch {
                    failures.add("\(label), worker \(worker): \(error)")
                }
            }
            #expect(failures.messages.isEmpty, "\(failures.messages)")
            try image.close()
        }
        let reopened = try Qcow2Image(path: path, readOnly: true)
        for (block, bytes) in model.snapshot() {
            var got = [UInt8](repeating: 0xEE, count: bytes.count)
            try got.withUnsafeMutableBytes { try reopened.read(into: $0, at: block * SparseModel.blockSize) }
            #expect(got == bytes, "\(label): block \(block) differs after reopening")
        }
    }

    /// One random request, checked against (and applied to) the model.
    static func step(_ rng: inout SplitMix64, image: Qcow2Image, model: SparseModel,
                     base: UInt64, span: UInt64, cluster: UInt64) throws {
        // Half the requests near a hot spot, half anywhere in the worker's span.
        let hot = rng.next() % 2 == 0
        let start = base + (hot ? rng.next() % min(span, 64 * cluster) : rng.next() % span)
        let length = min(1 + rng.next() % (rng.next() % 4 == 0 ? 3 * cluster : 4096), base + span - start)
        switch rng.next() % 10 {
        case 0..<4:
            let data = (0..<Int(length)).map { _ in UInt8(truncatingIfNeeded: rng.next() | 1) }
            try data.withUnsafeBytes { try image.write($0, at: start, fua: rng.next() % 4 == 0) }
            model.write(data, at: start)
        case 4:
            try image.writeZeroes(offset: start, length: length, mayTrim: rng.next() % 2 == 0, fastOnly: false, fua: false)
            model.write([UInt8](repeating: 0, count: Int(length)), at: start)
        case 5:
            try image.trim(offset: start, length: length, fua: false)
            // The driver's contract: whole clusters read as zero, partial clusters are untouched.
            let first = (start + cluster - 1) / cluster * cluster, end = (start + length) / cluster * cluster
            if first < end { model.write([UInt8](repeating: 0, count: Int(end - first)), at: first) }
        case 6:
            try image.flush()
        default:
            var got = [UInt8](repeating: 0xEE, count: Int(length))
            try got.withUnsafeMutableBytes { try image.read(into: $0, at: start) }
            let want = model.read(at: start, count: Int(length))
            guard got == want else {
                throw BlockDeviceError(.io, "read \(start)+\(length) differs from the model at byte \(got.indices.first { got[$0] != want[$0] } ?? -1)")
            }
            // Block status may say "zero" only where the model holds zeroes.
            var cursor = start
            for extent in try image.extents(offset: start, length: length) {
                let n = min(extent.length, start + length - cursor)
                if extent.flags.contains(.zero), model.read(at: cursor, count: Int(n)).contains(where: { $0 != 0 }) {
                    throw BlockDeviceError(.io, "block status says \(cursor)+\(n) reads as zero; the model has data there")
                }
                cursor += n
                if cursor >= start + length { break }
            }
        }
    }
}

/// Guest contents by 4 KiB block; absent blocks read as zero. Thread-safe.
final class SparseModel: @unchecked Sendable {
    static let blockSize: UInt64 = 4096
    private let lock = NSLock()
    private var blocks: [UInt64: [UInt8]] = [:]

    func write(_ data: [UInt8], at offset: UInt64) {
        lock.withLock {
            var done = 0
            while done < data.count {
                let at = offset + UInt64(done)
                let block = at / Self.blockSize, inBlock = Int(at % Self.blockSize)
                let n = min(data.count - done, Int(Self.blockSize) - inBlock)
                var bytes = blocks[block] ?? [UInt8](repeating: 0, count: Int(Self.blockSize))
                bytes.replaceSubrange(inBlock..<inBlock + n, with: data[done..<done + n])
                blocks[block] = bytes
                done += n
            }
        }
    }

    func read(at offset: UInt64, count: Int) -> [UInt8] {
        lock.withLock {
            var out = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let at = offset + UInt64(done)
                let block = at / Self.blockSize, inBlock = Int(at % Self.blockSize)
                let n = min(count - done, Int(Self.blockSize) - inBlock)
                if let bytes = blocks[block] { out.replaceSubrange(done..<done + n, with: bytes[inBlock..<inBlock + n]) }
                done += n
            }
            return out
        }
    }

    func snapshot() -> [(UInt64, [UInt8])] { lock.withLock { blocks.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } } }
}

final class FailureLog: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ message: String) { lock.withLock { list.append(message) } }
    var any: Bool { lock.withLock { !list.isEmpty } }
    var messages: [String] { lock.withLock { list } }
}
