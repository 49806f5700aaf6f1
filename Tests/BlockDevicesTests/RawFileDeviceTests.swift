import Foundation
import Testing
@testable import BlockDevices

@Suite("RawFileDevice")
struct RawFileDeviceTests {
    @Test("data written at an offset reads back identically")
    func roundTrip() throws {
        let file = try ScratchFile(size: 1 << 20)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        let data = bytes(10_000, seed: 7)
        try data.withUnsafeBytes { try device.write($0, at: 4095, fua: true) }
        var back = [UInt8](repeating: 0xff, count: 10_000)
        try back.withUnsafeMutableBytes { try device.read(into: $0, at: 4095) }
        #expect(back == data)
        #expect(device.size == 1 << 20)
        try device.flush()
        #expect(Array(file.contents[4095..<14095]) == data)
    }

    @Test("reads and writes past the end fail with outOfRange, including offset overflow")
    func outOfRange() throws {
        let file = try ScratchFile(size: 8192)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        var buffer = [UInt8](repeating: 0, count: 512)
        for offset: UInt64 in [8192 - 511, 8192, UInt64.max, UInt64.max - 100] {
            let error = #expect(throws: BlockDeviceError.self) {
                try buffer.withUnsafeMutableBytes { try device.read(into: $0, at: offset) }
            }
            #expect(error?.code == .outOfRange)
        }
        #expect(throws: BlockDeviceError.self) {
            try buffer.withUnsafeBytes { try device.write($0, at: 8000, fua: false) }
        }
        #expect(throws: BlockDeviceError.self) {
            try device.writeZeroes(offset: 1, length: UInt64.max, mayTrim: true, fastOnly: false, fua: false)
        }
        #expect(throws: BlockDeviceError.self) { try device.extents(offset: 8192, length: 1) }
    }

    @Test("a sparse file reports holes, and written data as data")
    func extentsOfSparseFile() throws {
        let file = try ScratchFile(size: 4 << 20)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        #expect(device.capabilities.contains(.extents))
        #expect(try device.extents(offset: 0, length: 4 << 20) == [Extent(length: 4 << 20, flags: [.hole, .zero])])
        let data = bytes(1 << 20, seed: 3)
        try data.withUnsafeBytes { try device.write($0, at: 1 << 20, fua: false) }
        let extents = try device.extents(offset: 0, length: 4 << 20)
        #expect(extents == [
            Extent(length: 1 << 20, flags: [.hole, .zero]),
            Extent(length: 1 << 20, flags: []),
            Extent(length: 2 << 20, flags: [.hole, .zero]),
        ])
        // A query inside the data extent is clamped to the request.
        #expect(try device.extents(offset: (1 << 20) + 4096, length: 4096) == [Extent(length: 4096, flags: [])])
    }

    @Test("trim and zeroing that may trim punch holes; NO_HOLE zeroing reads back zeroes")
    func trimAndZeroes() throws {
        let file = try ScratchFile(size: 1 << 20, pattern: 0xab)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        try device.trim(offset: 0, length: 256 << 10, fua: true)
        try device.writeZeroes(offset: 256 << 10, length: 256 << 10, mayTrim: true, fastOnly: false, fua: false)
        try device.writeZeroes(offset: 512 << 10, length: 256 << 10, mayTrim: false, fastOnly: true, fua: true)
        let extents = try device.extents(offset: 0, length: 512 << 10)
        #expect(extents == [Extent(length: 512 << 10, flags: [.hole, .zero])])
        var buffer = [UInt8](repeating: 0xff, count: 768 << 10)
        try buffer.withUnsafeMutableBytes { try device.read(into: $0, at: 0) }
        #expect(buffer.allSatisfy { $0 == 0 })
        var tail = [UInt8](repeating: 0, count: 256 << 10)
        try tail.withUnsafeMutableBytes { try device.read(into: $0, at: 768 << 10) }
        #expect(tail.allSatisfy { $0 == 0xab })
    }

    @Test("zeroing an unaligned range leaves the neighbouring bytes alone")
    func unalignedZeroes() throws {
        let file = try ScratchFile(size: 16384, pattern: 0x5a)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        try device.writeZeroes(offset: 1000, length: 5000, mayTrim: true, fastOnly: false, fua: false)
        let contents = file.contents
        #expect(contents[999] == 0x5a)
        #expect(contents[1000..<6000].allSatisfy { $0 == 0 })
        #expect(contents[6000] == 0x5a)
    }

    @Test("a second writable open of the same image is refused as locked")
    func secondWriterIsLocked() throws {
        let file = try ScratchFile(size: 65536)
        let first = try RawFileDevice(path: file.path, readOnly: false)
        let error = #expect(throws: BlockDeviceError.self) { _ = try RawFileDevice(path: file.path, readOnly: false) }
        #expect(error?.code == .locked)
        // A reader that shares writers is still allowed (like `qemu-img info`).
        let reader = try RawFileDevice(path: file.path, readOnly: true)
        try reader.close()
        try first.close()
        // Closing released the lock.
        let again = try RawFileDevice(path: file.path, readOnly: false)
        try again.close()
    }

    @Test("a read-only device refuses every kind of write")
    func readOnlyOpen() throws {
        let file = try ScratchFile(size: 4096, pattern: 1)
        let device = try RawFileDevice(path: file.path, readOnly: true)
        defer { try? device.close() }
        #expect(device.capabilities.contains(.readOnly))
        #expect(!device.capabilities.contains(.trim))
        let buffer = [UInt8](repeating: 0, count: 16)
        let error = #expect(throws: BlockDeviceError.self) { try buffer.withUnsafeBytes { try device.write($0, at: 0, fua: false) } }
        #expect(error?.code == .readOnly)
        #expect(throws: BlockDeviceError.self) { try device.trim(offset: 0, length: 16, fua: false) }
        #expect(throws: BlockDeviceError.self) {
            try device.writeZeroes(offset: 0, length: 16, mayTrim: false, fastOnly: false, fua: false)
        }
    }

    @Test("opening a missing file, a directory or a socket fails with a clear error")
    func badPaths() throws {
        let missing = #expect(throws: BlockDeviceError.self) { _ = try RawFileDevice(path: "/nonexistent/x.img", readOnly: true) }
        #expect(missing?.code == .notFound)
        let directory = #expect(throws: BlockDeviceError.self) {
            _ = try RawFileDevice(path: FileManager.default.temporaryDirectory.path, readOnly: true)
        }
        #expect(directory?.code == .invalidArgument)
        let character = #expect(throws: BlockDeviceError.self) { _ = try RawFileDevice(path: "/dev/null", readOnly: true) }
        #expect(character?.code == .invalidArgument)
    }

    @Test("I/O after close fails with shutdown instead of touching a stale descriptor")
    func useAfterClose() throws {
        let file = try ScratchFile(size: 4096)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        try device.close()
        try device.close()
        var buffer = [UInt8](repeating: 0, count: 16)
        let error = #expect(throws: BlockDeviceError.self) { try buffer.withUnsafeMutableBytes { try device.read(into: $0, at: 0) } }
        #expect(error?.code == .shutdown)
    }

    @Test("zero-length operations succeed without effect")
    func zeroLength() throws {
        let file = try ScratchFile(size: 4096, pattern: 9)
        let device = try RawFileDevice(path: file.path, readOnly: false)
        defer { try? device.close() }
        try device.trim(offset: 4096, length: 0, fua: false)
        try device.writeZeroes(offset: 0, length: 0, mayTrim: false, fastOnly: false, fua: false)
        #expect(try device.extents(offset: 100, length: 0).isEmpty)
        #expect(file.contents.allSatisfy { $0 == 9 })
    }
}
