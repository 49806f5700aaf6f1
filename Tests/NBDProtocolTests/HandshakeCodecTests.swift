import Testing
@testable import NBDProtocol

@Suite("Handshake codecs")
struct HandshakeCodecTests {
    @Test("the newstyle greeting is 18 bytes and decodes byte by byte")
    func newstyleGreeting() throws {
        let greeting = NewstyleGreeting(handshakeFlags: [.fixedNewstyle, .noZeroes])
        let bytes = greeting.bytes
        #expect(bytes == utf8("NBDMAGIC") + utf8("IHAVEOPT") + [0, 3])
        let decoded = try decodeBytewise(bytes) { try NewstyleGreeting(decoding: $0) }
        #expect(decoded == greeting)
    }

    @Test("a greeting with a wrong magic is rejected")
    func greetingWrongMagic() {
        var bytes = NewstyleGreeting().bytes
        bytes[0] ^= 0xff
        #expect(protocolErrorCode { _ = try NewstyleGreeting(decoding: bytes) } == .badMagic)
        let trailing = NewstyleGreeting().bytes + [0]
        #expect(protocolErrorCode { _ = try NewstyleGreeting(decoding: trailing) } == .trailingBytes)
    }

    @Test("client flags are 4 bytes and unknown bits survive decoding")
    func clientFlags() throws {
        let flags = try decodeBytewise([0, 0, 0, 0x83]) { try ClientFlags(decoding: $0) }
        #expect(flags.contains(.fixedNewstyle))
        #expect(flags.contains(.noZeroes))
        #expect(flags.rawValue == 0x83)
        #expect(ClientFlags([.fixedNewstyle]).bytes == [0, 0, 0, 1])
    }

    @Test("the oldstyle greeting is 152 bytes and rejects flag words above 16 bits")
    func oldstyleGreeting() throws {
        let greeting = OldstyleGreeting(exportSize: 1 << 30, transmissionFlags: [.hasFlags, .readOnly])
        let bytes = greeting.bytes
        #expect(bytes.count == 152)
        #expect(try decodeBytewise(bytes) { try OldstyleGreeting(decoding: $0) } == greeting)
        var bad = bytes
        bad[24] = 1
        #expect(protocolErrorCode { _ = try OldstyleGreeting(decoding: bad) } == .invalidValue)
    }

    @Test("the first 16 greeting bytes tell newstyle from oldstyle")
    func greetingStyle() throws {
        #expect(try GreetingStyle(firstSixteenBytes: Array(NewstyleGreeting().bytes[0 ..< 16])) == .newstyle)
        let old = OldstyleGreeting(exportSize: 0, transmissionFlags: .hasFlags).bytes
        #expect(try GreetingStyle(firstSixteenBytes: Array(old[0 ..< 16])) == .oldstyle)
        #expect(protocolErrorCode { _ = try GreetingStyle(firstSixteenBytes: utf8("NBDMAGICNOTMAGIC")) } == .badMagic)
    }
}
