import BlockDevices
import Foundation
import TestSupport
import Qcow2

/// The raw file that must end up identical to the qcow2 image: every operation applied to the
/// image is mirrored here by plain `pwrite`s of the bytes the guest should then see.
final class RawTwin: @unchecked Sendable {
    let handle: FileHandle
    let lock = NSLock()
    init(path: String) throws { handle = try FileHandle(forUpdating: URL(fileURLWithPath: path)) }
    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try lock.withLock {
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: Data(bytes))
        }
    }
    func close() throws { try handle.close() }
}

/// Random writes, zero writes and discards on an image and its raw twin.
///
/// With `threads > 1` each thread owns interleaved half-cluster slots, so threads constantly
/// share clusters (racing allocations and copy-on-write of one cluster) but never the same
/// bytes, which keeps the expected contents deterministic.
struct Qcow2Workload {
    var clusterSize: UInt64
    /// Discard of whole clusters reads back as zero (v3, or no backing file); otherwise ignored.
    var discardZeroes: Bool
    var operations = 200
    var seed: UInt64 = 1

    func run(on image: Qcow2Image, twin: RawTwin, threads: Int) throws {
        let size = image.size
        let slot = max(clusterSize / 2, 256)
        let slots = size / slot
        let errors = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var rng = SplitMix64(seed: seed &* 1000 &+ UInt64(t))
            do {
                for _ in 0..<operations {
                    let k = (UInt64.random(in: 0..<max(1, slots / UInt64(threads)), using: &rng) * UInt64(threads) + UInt64(t))
                    guard k < slots else { continue }
                    let start = k * slot + UInt64.random(in: 0..<slot, using: &rng)
                    let length = UInt64.random(in: 1...(k * slot + slot - start), using: &rng)
                    let kind = Int.random(in: 0..<10, using: &rng)
                    if kind < 7 {
                        var bytes = [UInt8](repeating: 0, count: Int(length))
                        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
                        try bytes.withUnsafeBytes { try image.write($0, at: start, fua: Bool.random(using: &rng)) }
                        try twin.write(bytes, at: start)
                    } else {
                        try image.writeZeroes(offset: start, length: length, mayTrim: Bool.random(using: &rng), fastOnly: false, fua: false)
                        try twin.write([UInt8](repeating: 0, count: Int(length)), at: start)
                    }
                }
            } catch {
                errors.record(error)
            }
        }
        if let error = errors.first { throw error }
    }

    /// Whole-cluster zeroing and discard (metadata-only paths), single-threaded.
    func runClusterOps(on image: Qcow2Image, twin: RawTwin, count: Int = 60) throws {
        var rng = SplitMix64(seed: seed &+ 77)
        let clusters = (image.size + clusterSize - 1) / clusterSize
        for _ in 0..<count {
            let first = UInt64.random(in: 0..<clusters, using: &rng)
            let n = UInt64.random(in: 1...min(4, clusters - first), using: &rng)
            let start = first * clusterSize
            let length = min(n * clusterSize, image.size - start)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                try image.writeZeroes(offset: start, length: length, mayTrim: Bool.random(using: &rng), fastOnly: false, fua: false)
                try twin.write([UInt8](repeating: 0, count: Int(length)), at: start)
            case 1:
                try image.trim(offset: start, length: length, fua: false)
                if discardZeroes { try twin.write([UInt8](repeating: 0, count: Int(length)), at: start) }
            default:
                var bytes = [UInt8](repeating: 0, count: Int(length))
                for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
                try bytes.withUnsafeBytes { try image.write($0, at: start, fua: false) }
                try twin.write(bytes, at: start)
            }
        }
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [Error] = []
    func record(_ e: Error) { lock.withLock { errors.append(e) } }
    var first: Error? { lock.withLock { errors.first } }
}
