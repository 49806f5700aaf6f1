import BlockDevices
import Foundation
import Testing
import TestSupport
@testable import Qcow2

/// The in-memory bitmap (`Qcow2DirtyBits`) against a plain array of bools, and the bitmap
/// directory parser against hand-built entries broken one way at a time. The on-disk
/// behaviour against QEMU is in Tests/InteropTests/Qcow2BitmapInteropTests.swift.
@Suite("qcow2 dirty bitmaps: bits and directory")
struct Qcow2BitmapTests {
    /// Naive runs of a bool model, clipped to the request and the disk.
    static func modelRuns(_ model: [Bool], granularity: UInt64, size: UInt64, offset: UInt64, length: UInt64) -> [Qcow2DirtyRun] {
        var runs: [Qcow2DirtyRun] = []
        var position = offset
        let end = min(offset + length, size)
        while position < end {
            let dirty = model[Int(position / granularity)]
            let granuleEnd = min((position / granularity + 1) * granularity, end)
            if let last = runs.last, last.dirty == dirty {
                runs[runs.count - 1].length += granuleEnd - position
            } else {
                runs.append(Qcow2DirtyRun(length: granuleEnd - position, dirty: dirty))
            }
            position = granuleEnd
        }
        return runs
    }

    @Test("random set ranges match a bool-per-granule model (runs, bytes on disk, changed chunks)",
          arguments: [(UInt64(1) << 20 + 1536, UInt8(9), UInt64(512)), (UInt64(3) << 20, UInt8(12), UInt64(512)),
                      (UInt64(5) << 20 + 512, UInt8(16), UInt64(4096))])
    func randomAgainstModel(size: UInt64, granularityBits: UInt8, clusterSize: UInt64) {
        let seed = UInt64(size ^ UInt64(granularityBits))
        var rng = SplitMix64(seed: seed)
        let granularity = UInt64(1) << UInt64(granularityBits)
        var bits = Qcow2DirtyBits(virtualSize: size, granularityBits: granularityBits, clusterSize: clusterSize)
        let granules = Int((size + granularity - 1) / granularity)
        #expect(bits.bitCount == UInt64(granules))
        var model = [Bool](repeating: false, count: granules)
        for step in 0..<300 {
            let offset = rng.next() % size
            let length = 1 + rng.next() % min(size - offset, step % 10 == 0 ? size : 64 << 10)
            bits.set(offset: offset, length: length)
            for g in Int(offset / granularity)...Int((offset + length - 1) / granularity) { model[g] = true }
            if step % 30 == 0 {
                let qOffset = rng.next() % size
                let qLength = 1 + rng.next() % (size - qOffset)
                let expected = Self.modelRuns(model, granularity: granularity, size: size, offset: qOffset, length: qLength)
                #expect(bits.runs(offset: qOffset, length: qLength, maxRuns: .max) == expected, "seed \(seed) step \(step)")
            }
        }
        #expect(bits.runs(offset: 0, length: size, maxRuns: .max)
                == Self.modelRuns(model, granularity: granularity, size: size, offset: 0, length: size), "seed \(seed)")
        // Serialised chunks: bit i of the disk is bit i % 8 of byte i / 8 (LSB first), tail zero.
        let changed = bits.takeChanged()
        var serialized: [UInt8] = []
        for chunk in 0..<bits.chunks.count { serialized += bits.bytes(chunk: chunk) }
        for g in 0..<serialized.count * 8 {
            let bit = serialized[g / 8] >> (g % 8) & 1 == 1
            #expect(bit == (g < granules && model[g]), "seed \(seed) granule \(g)")
            if bit != (g < granules && model[g]) { break }
        }
        // Every chunk with a set bit was reported changed, and nothing else.
        let expectedChanged = (0..<bits.chunks.count).filter { bits.chunks[$0] != nil }
        #expect(changed == expectedChanged)
        #expect(bits.takeChanged().isEmpty)
        // Loading the serialised form gives the same bits back.
        var reloaded = Qcow2DirtyBits(virtualSize: size, granularityBits: granularityBits, clusterSize: clusterSize)
        for chunk in 0..<bits.chunks.count {
            let start = chunk * Int(clusterSize)
            reloaded.load(chunk: chunk, bytes: Array(serialized[start..<start + Int(clusterSize)]))
        }
        #expect(reloaded.runs(offset: 0, length: size, maxRuns: .max) == bits.runs(offset: 0, length: size, maxRuns: .max))
    }

    @Test("maxRuns bounds the answer and the runs still start at the request offset")
    func maxRunsBound() {
        var bits = Qcow2DirtyBits(virtualSize: 1 << 20, granularityBits: 9, clusterSize: 512)
        for g in stride(from: UInt64(0), to: 2048, by: 2) { bits.set(offset: g * 512, length: 512) }
        let runs = bits.runs(offset: 100, length: (1 << 20) - 100, maxRuns: 5)
        #expect(runs == [Qcow2DirtyRun(length: 412, dirty: true), Qcow2DirtyRun(length: 512, dirty: false),
                         Qcow2DirtyRun(length: 512, dirty: true), Qcow2DirtyRun(length: 512, dirty: false),
                         Qcow2DirtyRun(length: 512, dirty: true)])
    }

    @Test("an all-ones table entry loads without the tail bits past the disk")
    func allOnesTail() {
        var bits = Qcow2DirtyBits(virtualSize: 10 * 512 + 100, granularityBits: 9, clusterSize: 512)
        bits.loadAllOnes(chunk: 0)
        #expect(bits.runs(offset: 0, length: 10 * 512 + 100, maxRuns: .max) == [Qcow2DirtyRun(length: 10 * 512 + 100, dirty: true)])
        let bytes = bits.bytes(chunk: 0)
        #expect(bytes[0] == 0xFF && bytes[1] == 0x07 && bytes[2...].allSatisfy { $0 == 0 })
    }

    @Test("a 4 TiB disk at 64 KiB granularity: memory only for chunks that hold set bits")
    func multiTiBFootprint() {
        let size: UInt64 = 4 << 40
        var bits = Qcow2DirtyBits(virtualSize: size, granularityBits: 16, clusterSize: 65536)
        #expect(bits.chunks.count == 128)
        let offsets: [UInt64] = [0, 1 << 40, size - 4096]
        for o in offsets { bits.set(offset: o, length: 4096) }
        #expect(bits.memoryBytes <= 3 * 65536 + 128 * 16)
        let runs = bits.runs(offset: 0, length: size, maxRuns: .max)
        #expect(runs == [Qcow2DirtyRun(length: 65536, dirty: true), Qcow2DirtyRun(length: (1 << 40) - 65536, dirty: false),
                         Qcow2DirtyRun(length: 65536, dirty: true), Qcow2DirtyRun(length: size - (1 << 40) - 2 * 65536, dirty: false),
                         Qcow2DirtyRun(length: 65536, dirty: true)])
        bits.set(offset: 0, length: size)
        #expect(bits.runs(offset: 0, length: size, maxRuns: .max) == [Qcow2DirtyRun(length: size, dirty: true)])
        #expect(bits.memoryBytes <= (8 << 20) + 128 * 16)
    }

    // MARK: directory

    static func entryBytes(name: String, flags: UInt32 = 2, type: UInt8 = 1, granularityBits: UInt8 = 16,
                           tableOffset: UInt64 = 0x30000, tableSize: UInt32 = 1, extra: [UInt8] = []) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 24)
        bytes.putBE64(tableOffset, at: 0)
        bytes.putBE32(tableSize, at: 8)
        bytes.putBE32(flags, at: 12)
        bytes[16] = type
        bytes[17] = granularityBits
        bytes.putBE16(UInt16(name.utf8.count), at: 18)
        bytes.putBE32(UInt32(extra.count), at: 20)
        bytes += extra + Array(name.utf8)
        while bytes.count % 8 != 0 { bytes.append(0) }
        return bytes
    }

    @Test("a directory of two entries parses, padding and positions included")
    func parsesDirectory() throws {
        let first = Self.entryBytes(name: "b0")
        let second = Self.entryBytes(name: "checkpoint-2026", flags: 1, granularityBits: 9, extra: [1, 2, 3])
        let entries = try Qcow2BitmapDirectory.parse(first + second, count: 2)
        #expect(entries.map(\.name) == ["b0", "checkpoint-2026"])
        #expect(entries[0].isAuto && !entries[0].inUse && entries[0].granularity == 65536)
        #expect(entries[1].inUse && !entries[1].isAuto && entries[1].position == first.count && entries[1].extraDataSize == 3)
        // Extra data without the compatible flag makes the bitmap unusable, with the reason.
        #expect(Qcow2BitmapDirectory.problem(with: entries[1], clusterSize: 65536, virtualSize: 1 << 20, fileLength: 1 << 20)?
            .contains("extra data") == true)
        #expect(Qcow2BitmapDirectory.problem(with: entries[0], clusterSize: 65536, virtualSize: 1 << 20, fileLength: 1 << 20) == nil)
        // The flags writer touches exactly the flags word.
        var changed = entries[0]
        changed.flags = 3
        let rewritten = Qcow2BitmapDirectory.withFlags(first + second, entries: [changed])
        #expect(rewritten.be32(at: 12) == 3 && Array(rewritten[16...]) == Array((first + second)[16...]))
    }

    @Test("malformed directories are refused with a reason, never a trap")
    func refusesMalformed() {
        let good = Self.entryBytes(name: "b0")
        var badPadding = Self.entryBytes(name: "b")
        badPadding[badPadding.count - 1] = 1
        var longName = good
        longName.putBE16(2000, at: 18)
        var hugeExtra = good
        hugeExtra.putBE32(.max, at: 20)
        var emptyName = good
        emptyName.putBE16(0, at: 18)
        var badUTF8 = Self.entryBytes(name: "ab")
        badUTF8[24] = 0xC3
        badUTF8[25] = 0x28
        let cases: [([UInt8], UInt32)] = [
            (good, 2), (Array(good.prefix(20)), 1), (good + [0, 0, 0, 0, 0, 0, 0, 0], 1), (badPadding, 1),
            (longName, 1), (hugeExtra, 1), (emptyName, 1), (good + good, 2), (badUTF8, 1),
        ]
        for (bytes, count) in cases {
            #expect(throws: BlockDeviceError.self) { _ = try Qcow2BitmapDirectory.parse(bytes, count: count) }
        }
        let entry = try? Qcow2BitmapDirectory.parse(good, count: 1).first
        #expect(entry != nil)
        guard var e = entry else { return }
        let checks: [(inout Qcow2BitmapEntry) -> Void] = [
            { $0.type = 2 }, { $0.flags |= 8 }, { $0.granularityBits = 8 }, { $0.granularityBits = 32 },
            { $0.tableOffset = 0x30001 }, { $0.tableOffset = 0 }, { $0.tableOffset = 1 << 40 }, { $0.tableSize = 0 },
            { $0.tableSize = .max },
        ]
        for (i, change) in checks.enumerated() {
            var broken = e
            change(&broken)
            #expect(Qcow2BitmapDirectory.problem(with: broken, clusterSize: 65536, virtualSize: 1 << 30, fileLength: 1 << 20) != nil,
                    "check \(i)")
        }
        e.tableSize = 1
        #expect(Qcow2BitmapDirectory.problem(with: e, clusterSize: 65536, virtualSize: 1 << 30, fileLength: 1 << 20) == nil)
    }

    @Test("bitmap table entries: zeroes, ones, data, and every reserved bit refused")
    func tableEntries() {
        let c: UInt64 = 65536
        #expect(Qcow2BitmapTableEntry.decode(0, clusterSize: c, fileLength: 1 << 20) == .zeroes)
        #expect(Qcow2BitmapTableEntry.decode(1, clusterSize: c, fileLength: 1 << 20) == .ones)
        #expect(Qcow2BitmapTableEntry.decode(0x20000, clusterSize: c, fileLength: 1 << 20) == .data(0x20000))
        #expect(Qcow2BitmapTableEntry.decode(0x20001, clusterSize: c, fileLength: 1 << 20) == nil)
        #expect(Qcow2BitmapTableEntry.decode(0x20200, clusterSize: c, fileLength: 1 << 20) == nil)
        #expect(Qcow2BitmapTableEntry.decode(0x100000, clusterSize: c, fileLength: 1 << 20) == nil)  // past the end
        for bit in [1, 8, 56, 63] {
            #expect(Qcow2BitmapTableEntry.decode(0x20000 | 1 << UInt64(bit), clusterSize: c, fileLength: 1 << 20) == nil)
        }
    }

    // MARK: the committed fuzz seed (made by Fuzz/tools/make-qcow2-seeds.sh with qemu-img bitmap)

    static func seedBytes() throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/corpus/qcow2/gen-bitmaps-c512").standardizedFileURL
        return Array(try Data(contentsOf: url))
    }

    @Test("the bitmaps seed reaches the bitmap code: QEMU's bits load, a write is recorded in the enabled bitmap only")
    func seedLoadsAndRecords() throws {
        let dir = NSTemporaryDirectory() + "qcow2-bitmap-seed-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/seed.qcow2"
        try Data(try Self.seedBytes()).write(to: URL(fileURLWithPath: path))
        let size: UInt64 = 1 << 20
        let ro = try Qcow2Image(path: path, readOnly: true)
        let infos = try ro.persistentBitmaps()
        #expect(infos.map(\.name) == ["b0", "b1"] && infos[0].enabled && !infos[1].enabled && infos[0].granularity == 512)
        // qemu-io wrote [0, 3k) and [700k, 701k).
        #expect(try ro.dirtyRuns(bitmap: "b0", offset: 0, length: size)
                == [Qcow2DirtyRun(length: 3072, dirty: true), Qcow2DirtyRun(length: 700 * 1024 - 3072, dirty: false),
                    Qcow2DirtyRun(length: 1024, dirty: true), Qcow2DirtyRun(length: size - 701 * 1024, dirty: false)])
        let b1Before = try ro.dirtyRuns(bitmap: "b1", offset: 0, length: size)
        try ro.close()

        let rw = try Qcow2Image(path: path)
        try [UInt8](repeating: 9, count: 600).withUnsafeBytes { try rw.write($0, at: 100 * 1024 + 100, fua: false) }
        try rw.close()
        let again = try Qcow2Image(path: path, readOnly: true)
        #expect(try again.persistentBitmaps().allSatisfy { !$0.inconsistent })
        #expect(try again.dirtyRuns(bitmap: "b0", offset: 100 * 1024 - 512, length: 2048)
                == [Qcow2DirtyRun(length: 512, dirty: false), Qcow2DirtyRun(length: 1024, dirty: true), Qcow2DirtyRun(length: 512, dirty: false)])
        #expect(try again.dirtyRuns(bitmap: "b1", offset: 0, length: size) == b1Before)
        try again.close()
    }

    @Test("flipped bytes in the bitmaps extension, directory and tables never trap (through the fuzz entry point)")
    func seedMutations() throws {
        let original = try Self.seedBytes()
        let header = try Qcow2Header.parse(original, fileLength: UInt64(original.count))
        let ext = try #require(header.bitmapsExtension)
        let directory = Array(original[Int(ext.directoryOffset)..<Int(ext.directoryOffset + ext.directorySize)])
        let entries = try Qcow2BitmapDirectory.parse(directory, count: ext.bitmapCount)
        var regions: [Range<Int>] = [Int(ext.directoryOffset)..<Int(ext.directoryOffset + ext.directorySize), 104..<512]
        for e in entries { regions.append(Int(e.tableOffset)..<Int(e.tableOffset) + Int(e.tableSize) * 8) }
        var rng = SplitMix64(seed: 77)
        for round in 0..<150 {
            var bytes = original
            for _ in 0..<(1 + round % 4) {
                let region = regions[Int(rng.next() % UInt64(regions.count))]
                let i = region.lowerBound + Int(rng.next() % UInt64(region.count))
                bytes[i] = round % 3 == 0 ? 0xFF : UInt8(truncatingIfNeeded: rng.next())
            }
            Qcow2FuzzEntryPoints.image(bytes)
        }
    }

    @Test("a bitmap table pointing at other metadata, or at another bitmap's cluster, is refused for writing (not overwritten)")
    func ownershipChecked() throws {
        let original = try Self.seedBytes()
        let header = try Qcow2Header.parse(original, fileLength: UInt64(original.count))
        let ext = try #require(header.bitmapsExtension)
        let directory = Array(original[Int(ext.directoryOffset)..<Int(ext.directoryOffset + ext.directorySize)])
        let entries = try Qcow2BitmapDirectory.parse(directory, count: ext.bitmapCount)
        let b0Table = Int(entries[0].tableOffset), b1Table = Int(entries[1].tableOffset)
        let b0Data = original.be64(at: b0Table)
        #expect(b0Data != 0 && b0Data != 1)
        let dir = NSTemporaryDirectory() + "qcow2-bitmap-own-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (label, table, value, reason) in [("L1", b0Table, header.l1TableOffset, "holds other qcow2 metadata"),
                                              ("shared", b1Table, b0Data, "is referenced twice"),
                                              ("refcount table", b1Table, header.refcountTableOffset, "holds other qcow2 metadata")] {
            var bytes = original
            bytes.putBE64(value, at: table)
            let path = dir + "/\(label).qcow2"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let error = try #require(throws: BlockDeviceError.self) { try Qcow2Image(path: path) }
            #expect(error.message.contains(reason), "\(label): \(error)")
            // Untouched: the file is byte for byte what it was.
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == bytes, "\(label)")
        }
    }

    @Test("bitmaps marked stale (autoclear bit 0 clear) are neither exported nor written")
    func staleAutoclear() throws {
        var bytes = try Self.seedBytes()
        bytes[95] &= ~1  // autoclear_features (bytes 88-95), bit 0
        let dir = NSTemporaryDirectory() + "qcow2-bitmap-stale-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/stale.qcow2"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let rw = try #require(throws: BlockDeviceError.self) { try Qcow2Image(path: path) }
        #expect(rw.message.contains("stale"), "\(rw)")
        let ro = try Qcow2Image(path: path, readOnly: true)
        let export = try #require(throws: BlockDeviceError.self) { try ro.exportableBitmap(named: "b0") }
        #expect(export.message.contains("stale"), "\(export)")
        try ro.close()
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
    }
}
