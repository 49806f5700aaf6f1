import Testing
@testable import NBDProtocol

@Suite("ByteReader and ByteWriter")
struct ByteReaderTests {
    @Test("integers round-trip big-endian")
    func roundTrip() throws {
        var writer = ByteWriter()
        writer.append(UInt8(0x12))
        writer.append(UInt16(0x3456))
        writer.append(UInt32(0x789a_bcde))
        writer.append(UInt64(0x0102_0304_0506_0708))
        #expect(writer.bytes == [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 1, 2, 3, 4, 5, 6, 7, 8])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readU8() == 0x12)
        #expect(try reader.readU16() == 0x3456)
        #expect(try reader.readU32() == 0x789a_bcde)
        #expect(try reader.readU64() == 0x0102_0304_0506_0708)
        #expect(reader.isAtEnd)
    }

    @Test("reading past the end throws truncated instead of trapping")
    func truncation() {
        var reader = ByteReader([1, 2, 3])
        #expect(protocolErrorCode { _ = try reader.readU32() } == .truncated)
        #expect(protocolErrorCode { _ = try reader.readBytes(count: -1) } == .truncated)
        #expect(protocolErrorCode { _ = try reader.readBytes(count: UInt32.max) } == .truncated)
        #expect(protocolErrorCode { _ = try reader.readBytes(count: Int.max) } == .truncated)
        #expect(reader.remaining == 3)
    }

    @Test("strings reject embedded NUL, bad UTF-8 and more than 4096 bytes")
    func strings() {
        var nul = ByteReader([0x61, 0x00, 0x62])
        #expect(protocolErrorCode { _ = try nul.readString(length: 3) } == .embeddedNUL)
        var bad = ByteReader([0xff, 0xfe])
        #expect(protocolErrorCode { _ = try bad.readString(length: 2) } == .invalidUTF8)
        var long = ByteReader(Array(repeating: 0x61, count: 4097))
        #expect(protocolErrorCode { _ = try long.readString(length: 4097) } == .stringTooLong)
        var huge = ByteReader([0x61])
        #expect(protocolErrorCode { _ = try huge.readString(length: 0xffff_ffff) } == .stringTooLong)
        var short = ByteReader([0x61])
        #expect(protocolErrorCode { _ = try short.readString(length: 2) } == .lengthMismatch)
        var exact = ByteReader(Array(repeating: 0x61, count: 4096))
        #expect((try? exact.readString(length: 4096))?.utf8.count == 4096)
    }

    @Test("echoed names are cut to 80 characters and messages to 255 bytes")
    func echoTruncation() {
        let name = String(repeating: "n", count: 4096)
        #expect(NBDString.truncatedForEcho(name).count == 81)
        let message = String(repeating: "é", count: 300)
        let cut = NBDString.truncatedMessage(message)
        #expect(cut.utf8.count <= 255)
        #expect(cut.utf8.count == 254)
    }
}
