import BlockDevices
import Testing
@testable import Qcow2

@Suite("qcow2 L2 entries")
struct L2EntryTests {
    let standard = Qcow2Geometry(clusterBits: 16, extendedL2: false, version: 3, refcountOrder: 4)
    let v2 = Qcow2Geometry(clusterBits: 16, extendedL2: false, version: 2, refcountOrder: 4)
    let extended = Qcow2Geometry(clusterBits: 16, extendedL2: true, version: 3, refcountOrder: 4)

    @Test("an empty entry is unallocated for the rest of the cluster")
    func unallocated() throws {
        let run = try L2Entry(word: 0).run(at: 100, geometry: standard)
        #expect(run.mapping == .unallocated)
        #expect(run.length == 65536 - 100)
    }

    @Test("a normal entry maps to its host offset plus the offset in the cluster")
    func normal() throws {
        let run = try L2Entry(word: 0x8000_0000_0005_0000).run(at: 12, geometry: standard)
        #expect(run.mapping == .data(host: 0x50000 + 12))
        #expect(run.hostAllocated)
    }

    @Test("zero flag with and without a preallocated host cluster")
    func zeroFlag() throws {
        #expect(try L2Entry(word: 1).run(at: 0, geometry: standard) == MappedRun(mapping: .zero, length: 65536, hostAllocated: false))
        #expect(try L2Entry(word: 0x8000_0000_0005_0001).run(at: 0, geometry: standard).hostAllocated)
    }

    @Test("the zero flag in a v2 image is corruption")
    func zeroFlagInV2() {
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 1).run(at: 0, geometry: v2) }
    }

    @Test("reserved bits and host offset 0 with COPIED are corruption")
    func reservedBits() {
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0x0000_0000_0005_0100).run(at: 0, geometry: standard) }
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0x0100_0000_0000_0000).run(at: 0, geometry: standard) }
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0x8000_0000_0000_0000).run(at: 0, geometry: standard) }
    }

    @Test("a compressed descriptor decodes offset and sector count like qemu-img wrote it")
    func compressed() throws {
        // Observed from `qemu-img convert -c` with 64 KiB clusters: offset 0x500a2, 38 extra sectors (39 in all).
        let d = try CompressedDescriptor(word: 0x4980_0000_0005_00A2, geometry: standard)
        #expect(d.offset == 0x500A2)
        #expect(d.byteCount == 39 * 512 - 0xA2)
        #expect(d.hostClusters(geometry: standard) == 5...5)
        let spanning = CompressedDescriptor(offset: 0x5FF00, byteCount: 0x200)
        #expect(spanning.hostClusters(geometry: standard) == 5...6)
    }

    @Test("extended L2 bitmaps split a cluster into subcluster runs")
    func extendedRuns() throws {
        // Subcluster 0 allocated, 1-2 zero, the rest unallocated.
        let e = L2Entry(word: 0x8000_0000_0005_0000, bitmap: (0b110 << 32) | 0b1)
        let sub = extended.subclusterSize
        #expect(try e.run(at: 0, geometry: extended) == MappedRun(mapping: .data(host: 0x50000), length: sub, hostAllocated: true))
        #expect(try e.run(at: sub + 5, geometry: extended) == MappedRun(mapping: .zero, length: 2 * sub - 5, hostAllocated: true))
        #expect(try e.run(at: 3 * sub, geometry: extended) == MappedRun(mapping: .unallocated, length: 29 * sub, hostAllocated: true))
    }

    @Test("invalid extended L2 bitmaps are corruption")
    func extendedInvalid() {
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0x8000_0000_0005_0000, bitmap: 1 << 32 | 1).run(at: 0, geometry: extended) }
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0, bitmap: 1).run(at: 0, geometry: extended) }
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 1, bitmap: 0).run(at: 0, geometry: extended) }
        #expect(throws: BlockDeviceError.self) { try L2Entry(word: 0x4000_0000_0005_0000, bitmap: 1).run(at: 0, geometry: extended) }
    }
}

@Suite("qcow2 refcount packing")
struct RefcountPackingTests {
    @Test("counters of every width round-trip without touching their neighbours", arguments: [1, 2, 4, 8, 16, 32, 64] as [UInt64])
    func roundTrip(bits: UInt64) {
        var block = [UInt8](repeating: 0, count: 512)
        let entries = 512 * 8 / Int(bits)
        let max: UInt64 = bits == 64 ? .max : (1 << bits) - 1
        for i in 0..<entries { RefcountStore.write(&block, index: i, bits: bits, value: UInt64(i) & max) }
        RefcountStore.write(&block, index: 3, bits: bits, value: max)
        for i in 0..<entries {
            #expect(RefcountStore.read(block, index: i, bits: bits) == (i == 3 ? max : UInt64(i) & max))
        }
    }

    @Test("16-bit counters are big-endian, 1-bit counters start at the low bit")
    func layout() {
        var block = [UInt8](repeating: 0, count: 16)
        RefcountStore.write(&block, index: 1, bits: 16, value: 0x0102)
        #expect(Array(block[2..<4]) == [0x01, 0x02])
        var bits = [UInt8](repeating: 0, count: 2)
        RefcountStore.write(&bits, index: 0, bits: 1, value: 1)
        RefcountStore.write(&bits, index: 9, bits: 1, value: 1)
        #expect(bits == [0x01, 0x02])
    }
}
