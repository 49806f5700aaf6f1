import BlockDevices
import Testing
@testable import Qcow2

@Suite("qcow2 header parsing")
struct Qcow2HeaderTests {
    @Test("a minimal v3 header parses with its fields")
    func parsesV3() throws {
        let h = try HeaderBytes().parse()
        #expect(h.version == 3)
        #expect(h.clusterSize == 65536)
        #expect(h.size == 1 << 20)
        #expect(h.refcountOrder == 4)
        #expect(h.headerLength == 112)
        #expect(h.compressionType == .deflate)
        #expect(h.backingFileName == nil)
    }

    @Test("a v2 header implies 16-bit refcounts and a 72-byte header")
    func parsesV2() throws {
        let h = try HeaderBytes(version: 2).parse()
        #expect(h.version == 2)
        #expect(h.refcountOrder == 4)
        #expect(h.headerLength == 72)
    }

    @Test("backing file name and format extension are read from cluster 0")
    func readsBackingName() throws {
        var b = HeaderBytes()
        let next = b.addExtension(type: 0xE279_2ACA, data: Array("raw".utf8), at: 112)
        let name = Array("../base.img".utf8)
        let at = next + 8
        b.bytes.replaceSubrange(at..<at + name.count, with: name)
        b.set64(UInt64(at), at: 8)
        b.set32(UInt32(name.count), at: 16)
        let h = try b.parse()
        #expect(h.backingFileName == "../base.img")
        #expect(h.backingFormat == "raw")
    }

    @Test("unknown header extensions are skipped")
    func skipsUnknownExtensions() throws {
        var b = HeaderBytes()
        let next = b.addExtension(type: 0x1234_5678, data: [1, 2, 3], at: 112)
        b.addExtension(type: 0x2385_2875, data: [UInt8](repeating: 0, count: 24), at: next)
        #expect(try b.parse().hasBitmapsExtension)
    }

    static let malformed: [(String, (inout HeaderBytes) -> Void, BlockDeviceError.Code)] = [
        ("bad magic", { $0.set32(0x5146_49FC, at: 0) }, .badFormat),
        ("version 1", { $0.set32(1, at: 4) }, .unsupportedFeature),
        ("version 4", { $0.set32(4, at: 4) }, .unsupportedFeature),
        ("cluster bits 8", { $0.set32(8, at: 20) }, .badFormat),
        ("cluster bits 22", { $0.set32(22, at: 20) }, .badFormat),
        ("cluster bits 64", { $0.set32(64, at: 20) }, .badFormat),
        ("header length below 104", { $0.set32(100, at: 100) }, .badFormat),
        ("header length not a multiple of 8", { $0.set32(108, at: 100) }, .badFormat),
        ("header length beyond the cluster", { $0.set32(1 << 20, at: 100) }, .badFormat),
        ("refcount order 7", { $0.set32(7, at: 96) }, .badFormat),
        ("unknown incompatible bit", { $0.set64(1 << 20, at: 72) }, .unsupportedFeature),
        ("corrupt bit", { $0.set64(2, at: 72) }, .unsupportedFeature),
        ("external data file", { $0.set64(4, at: 72) }, .unsupportedFeature),
        ("AES encryption", { $0.set32(1, at: 32) }, .unsupportedFeature),
        ("LUKS encryption", { $0.set32(2, at: 32) }, .unsupportedFeature),
        ("zstd byte without incompatible bit", { $0.bytes[104] = 1 }, .badFormat),
        ("compression bit without zstd byte", { $0.set64(8, at: 72) }, .badFormat),
        ("unknown compression type", { $0.bytes[104] = 9; $0.set64(8, at: 72) }, .unsupportedFeature),
        ("extended L2 with 4 KiB clusters", { $0 = HeaderBytes(clusterBits: 12); $0.set64(16, at: 72) }, .badFormat),
        ("L1 table too small", { $0.set32(0, at: 36) }, .badFormat),
        ("L1 table larger than 32 MiB", { $0.set32(0x7FFF_FFFF, at: 36) }, .badFormat),
        ("L1 table past end of file", { $0.set64(1 << 40, at: 40) }, .badFormat),
        ("L1 offset unaligned", { $0.set64(3 * 65536 + 8, at: 40) }, .badFormat),
        ("no refcount table", { $0.set32(0, at: 56) }, .badFormat),
        ("refcount table larger than 8 MiB", { $0.set32(0xFFFF_FFFF, at: 56) }, .badFormat),
        ("refcount table unaligned", { $0.set64(65536 + 512, at: 48) }, .badFormat),
        ("refcount table at 0", { $0.set64(0, at: 48) }, .badFormat),
        ("virtual size absurd", { $0.set64(UInt64.max, at: 24) }, .badFormat),
        ("backing name outside cluster 0", { $0.set64(65530, at: 8); $0.set32(100, at: 16) }, .badFormat),
        // Found by the qcow2 fuzzer (long run of 2026-12-05): offset + size overflowed, a trap.
        ("backing name offset near 2^64", { $0.set64(UInt64.max - 8, at: 8); $0.set32(100, at: 16) }, .badFormat),
        ("backing name too long", { $0.set64(200, at: 8); $0.set32(2000, at: 16) }, .badFormat),
        ("backing name overlapping the header", { $0.set64(8, at: 8); $0.set32(4, at: 16) }, .badFormat),
        ("extension larger than the cluster", { $0.set32(0xE279_2ACA, at: 112); $0.set32(0xFFFF_FFF0, at: 116) }, .badFormat),
        ("external data file extension", { $0.addExtension(type: 0x4441_5441, data: Array("d.raw".utf8), at: 112) }, .unsupportedFeature),
        ("snapshot table unaligned", { $0.set32(1, at: 60); $0.set64(12345, at: 64) }, .badFormat),
    ]

    @Test("malformed headers are refused with a clear error", arguments: 0..<malformed.count)
    func refusesMalformed(_ i: Int) throws {
        let (name, mutate, code) = Self.malformed[i]
        var b = HeaderBytes()
        mutate(&b)
        let error = try #require(throws: BlockDeviceError.self, "\(name)") { try b.parse() }
        #expect(error.code == code, "\(name): \(error)")
        #expect(!error.message.isEmpty)
    }

    @Test("truncated headers of every length are refused, never a crash")
    func refusesTruncated() {
        let full = HeaderBytes().bytes
        for length in [0, 1, 4, 8, 50, 71, 72, 100, 103] {
            #expect(throws: BlockDeviceError.self, "length \(length)") {
                try Qcow2Header.parse(Array(full.prefix(length)), fileLength: UInt64(length))
            }
        }
    }
}
