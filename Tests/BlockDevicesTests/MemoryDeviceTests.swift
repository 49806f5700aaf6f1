import Foundation
import Testing
@testable import BlockDevices

@Suite("MemoryDevice")
struct MemoryDeviceTests {
    @Test("writes spanning several chunks read back, and untouched space reads as zeroes")
    func roundTripAcrossChunks() throws {
        let device = MemoryDevice(size: 1 << 20, chunkSize: 4096)
        let data = bytes(10_000, seed: 1)
        try data.withUnsafeBytes { try device.write($0, at: 3000, fua: false) }
        var back = [UInt8](repeating: 0xee, count: 16_000)
        try back.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }
        #expect(back[0..<3000].allSatisfy { $0 == 0 })
        #expect(Array(back[3000..<13000]) == data)
        #expect(back[13000...].allSatisfy { $0 == 0 })
        #expect(device.allocatedBytes == 4 * 4096)
    }

    @Test("extents report written chunks as data and the rest as holes")
    func extents() throws {
        let device = MemoryDevice(size: 64 << 10, chunkSize: 4096)
        #expect(try device.extents(offset: 0, length: 64 << 10) == [Extent(length: 64 << 10, flags: [.hole, .zero])])
        try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try device.write($0, at: 8192 + 5, fua: false) }
        #expect(try device.extents(offset: 0, length: 64 << 10) == [
            Extent(length: 8192, flags: [.hole, .zero]),
            Extent(length: 4096, flags: []),
            Extent(length: (64 << 10) - 12288, flags: [.hole, .zero]),
        ])
    }

    @Test("zeroing with NO_HOLE allocates, zeroing that may trim frees whole chunks")
    func writeZeroes() throws {
        let device = MemoryDevice(size: 32768, chunkSize: 4096)
        try [UInt8](repeating: 7, count: 32768).withUnsafeBytes { try device.write($0, at: 0, fua: false) }
        try device.writeZeroes(offset: 0, length: 8192, mayTrim: true, fastOnly: true, fua: false)
        try device.writeZeroes(offset: 8192, length: 100, mayTrim: true, fastOnly: false, fua: false)
        try device.writeZeroes(offset: 16384, length: 8192, mayTrim: false, fastOnly: false, fua: false)
        #expect(device.allocatedBytes == 6 * 4096)
        var back = [UInt8](repeating: 0xff, count: 32768)
        try back.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }
        #expect(back[0..<8292].allSatisfy { $0 == 0 })
        #expect(back[8292..<16384].allSatisfy { $0 == 7 })
        #expect(back[16384..<24576].allSatisfy { $0 == 0 })
        #expect(back[24576...].allSatisfy { $0 == 7 })
    }

    @Test("out-of-range and overflowing requests fail without changing anything")
    func outOfRange() throws {
        let device = MemoryDevice(size: 4096)
        var buffer = [UInt8](repeating: 0, count: 2)
        for offset: UInt64 in [4095, UInt64.max] {
            let error = #expect(throws: BlockDeviceError.self) { try buffer.withUnsafeMutableBytes { try device.read(into: $0, at: offset) } }
            #expect(error?.code == .outOfRange)
        }
        #expect(throws: BlockDeviceError.self) { try device.trim(offset: 4000, length: UInt64.max - 3000, fua: false) }
        #expect(device.allocatedBytes == 0)
    }

    @Test("concurrent writers to distinct ranges all land")
    func concurrentWrites() throws {
        let device = MemoryDevice(size: 64 * 1000, chunkSize: 1024)
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let data = [UInt8](repeating: UInt8(i), count: 1000)
            try? data.withUnsafeBytes { try device.write($0, at: UInt64(i * 1000), fua: false) }
        }
        var back = [UInt8](repeating: 0, count: 64 * 1000)
        try back.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }
        for i in 0..<64 { #expect(back[i * 1000..<(i + 1) * 1000].allSatisfy { $0 == UInt8(i) }) }
    }

    @Test("a closed device refuses I/O")
    func closed() throws {
        let device = MemoryDevice(size: 4096)
        try device.close()
        let error = #expect(throws: BlockDeviceError.self) { try device.flush() }
        #expect(error?.code == .shutdown)
    }
}

@Suite("ReadOnlyDevice")
struct ReadOnlyDeviceTests {
    @Test("the wrapper passes reads through and refuses writes, trims and zeroing")
    func refusesWrites() throws {
        let base = MemoryDevice(size: 8192)
        try [UInt8](repeating: 3, count: 100).withUnsafeBytes { try base.write($0, at: 0, fua: false) }
        let device = ReadOnlyDevice(base)
        #expect(device.capabilities.contains(.readOnly))
        #expect(!device.capabilities.contains(.writeZeroes))
        var back = [UInt8](repeating: 0, count: 100)
        try back.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }
        #expect(back.allSatisfy { $0 == 3 })
        let error = #expect(throws: BlockDeviceError.self) { try back.withUnsafeBytes { try device.write($0, at: 0, fua: false) } }
        #expect(error?.code == .readOnly)
        #expect(throws: BlockDeviceError.self) { try device.trim(offset: 0, length: 10, fua: false) }
        #expect(throws: BlockDeviceError.self) { try device.writeZeroes(offset: 0, length: 10, mayTrim: true, fastOnly: false, fua: false) }
        try device.flush()
        #expect(try device.extents(offset: 0, length: 8192) == [Extent(length: 8192, flags: [])])
    }
}

@Suite("Errno mapping")
struct ErrnoMappingTests {
    @Test("host errno values map to storage codes", arguments: [
        (ENOSPC, BlockDeviceError.Code.noSpace), (EDQUOT, .noSpace), (EFBIG, .noSpace),
        (EROFS, .readOnly), (EINVAL, .invalidArgument), (EOPNOTSUPP, .notSupported),
        (EIO, .io), (ENOENT, .notFound), (ESHUTDOWN, .shutdown), (12345, .io),
    ])
    func mapping(errnoValue: Int32, code: BlockDeviceError.Code) {
        #expect(BlockDeviceError.fromErrno(errnoValue, "test").code == code)
    }
}
