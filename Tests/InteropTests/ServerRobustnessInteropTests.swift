import Foundation
import NBDProtocol
import Testing

/// Malformed input, limits, signals and CLI errors against the built `swiftnbd serve`.
/// After each bad client the server must still serve a well-behaved one.
@Suite("Server robustness (raw sockets, limits, signals, CLI)", .serialized, .noLeftoverProcesses)
struct ServerRobustnessInteropTests {
    func serve(_ dir: TempDir, _ extra: [String] = [], size: UInt64 = 4 << 20) throws -> SwiftNBDServe {
        try makeSparseFile(dir.file("disk.img"), size: size)
        return try SwiftNBDServe([dir.file("disk.img"), "--name", "disk"] + extra)
    }

    /// A complete, correct session still works (the server survived whatever came before).
    func expectStillServing(_ server: SwiftNBDServe) throws {
        let peer = try ServerRawPeer(port: server.port)
        try peer.go(export: "disk")
        try peer.request(NBDRequest(command: .read, cookie: 99, offset: 0, length: 512))
        let header = try peer.simpleReply()
        #expect(header == SimpleReplyHeader(error: .success, cookie: 99), "server log:\n\(server.log)")
        _ = try peer.read(512)
    }

    @Test("handshake garbage: wrong magic, truncated options, oversize lengths, bogus inner lengths")
    func malformedHandshake() throws {
        let dir = TempDir()
        let server = try serve(dir)
        defer { server.stop() }

        let wrongMagic = try ServerRawPeer(port: server.port)
        try wrongMagic.greet()
        try wrongMagic.send(Array("IHAVEOPX".utf8) + [0, 0, 0, 3, 0, 0, 0, 0])
        #expect(wrongMagic.closedByServer())

        let unknownFlags = try ServerRawPeer(port: server.port)
        try unknownFlags.greet(clientFlags: 0x8000_0003)
        #expect(unknownFlags.closedByServer())

        let huge = try ServerRawPeer(port: server.port)
        try huge.greet()
        try huge.send(OptionHeader(option: .go, length: 0x7fff_ffff).bytes)
        #expect(huge.closedByServer())

        let truncated = try ServerRawPeer(port: server.port)
        try truncated.greet()
        try truncated.send(Array(OptionHeader(option: .go, length: 100).bytes + [0, 0, 0, 4]))
        _ = Glibc.shutdown(truncated.fd, Int32(SHUT_WR))
        #expect(truncated.closedByServer())

        let polite = try ServerRawPeer(port: server.port)
        try polite.greet()
        // Inner name length far beyond the option: ERR_INVALID, and the connection goes on.
        let bogus = try polite.optionReplies(OptionHeader(option: .go, length: 6).bytes + [0xff, 0xff, 0xff, 0xff, 0, 0])
        #expect(bogus.last?.0.replyType == .errInvalid)
        let unknown = try polite.option(NBDOption(rawValue: 0x4242), [1, 2, 3])
        #expect(unknown.last?.0.replyType == .errUnsupported)
        let list = try polite.option(.list, [1])
        #expect(list.last?.0.replyType == .errInvalid)
        let go = try polite.option(.go, try InfoRequestPayload(exportName: "disk").encoded())
        #expect(go.last?.0.replyType == .ack)

        try expectStillServing(server)
    }

    @Test("transmission garbage: errors per the spec for bad requests, hang-up for a bad magic or oversize payload")
    func malformedTransmission() throws {
        let dir = TempDir()
        let server = try serve(dir)
        defer { server.stop() }
        let peer = try ServerRawPeer(port: server.port)
        try peer.go(export: "disk")
        let size: UInt64 = 4 << 20
        let cases: [(NBDRequest, [UInt8], NBDErrno)] = [
            (NBDRequest(command: .read, cookie: 1, offset: size, length: 1), [], .EINVAL),
            (NBDRequest(command: .read, cookie: 2, offset: UInt64.max - 10, length: 512), [], .EINVAL),
            (NBDRequest(command: .read, cookie: 3, offset: 0, length: 48 << 20), [], .EINVAL),
            (NBDRequest(command: .write, cookie: 4, offset: size - 100, length: 512), [UInt8](repeating: 1, count: 512), .ENOSPC),
            (NBDRequest(command: .writeZeroes, cookie: 5, offset: size, length: 1), [], .ENOSPC),
            (NBDRequest(command: .trim, cookie: 6, offset: size - 1, length: 2), [], .EINVAL),
            (NBDRequest(command: NBDCommand(rawValue: 77), cookie: 7), [], .EINVAL),
            (NBDRequest(command: .flush, cookie: 8, offset: 1, length: 0), [], .EINVAL),
            (NBDRequest(command: .read, flags: .dontFragment, cookie: 9, length: 512), [], .EINVAL),
            (NBDRequest(command: .blockStatus, cookie: 10, length: 512), [], .EINVAL),
        ]
        for (request, payload, expected) in cases {
            try peer.request(request, payload: payload)
            #expect(try peer.simpleReply() == SimpleReplyHeader(error: expected, cookie: request.cookie), "\(request)")
        }
        // Still in sync after all of that.
        try peer.request(NBDRequest(command: .write, cookie: 20, offset: 0, length: 4), payload: [1, 2, 3, 4])
        #expect(try peer.simpleReply() == SimpleReplyHeader(error: .success, cookie: 20))

        // A payload too large to drain: hang up without reading it.
        let greedy = try ServerRawPeer(port: server.port)
        try greedy.go(export: "disk")
        try greedy.request(NBDRequest(command: .write, cookie: 1, offset: 0, length: 0xffff_0000))
        #expect(greedy.closedByServer())

        let wrongMagic = try ServerRawPeer(port: server.port)
        try wrongMagic.go(export: "disk")
        var bytes = try NBDRequest(command: .read, cookie: 1, length: 512).encoded(form: .compact)
        bytes[3] ^= 0x01
        try wrongMagic.send(bytes)
        #expect(wrongMagic.closedByServer())

        try expectStillServing(server)
    }

    @Test("writes, trims and zeroing on a read-only export fail with EPERM; reads work")
    func readOnlyExport() throws {
        let dir = TempDir()
        let server = try serve(dir, ["--read-only"])
        defer { server.stop() }
        let peer = try ServerRawPeer(port: server.port)
        try peer.go(export: "disk")
        try peer.request(NBDRequest(command: .write, cookie: 1, offset: 0, length: 512), payload: [UInt8](repeating: 9, count: 512))
        #expect(try peer.simpleReply() == SimpleReplyHeader(error: .EPERM, cookie: 1))
        try peer.request(NBDRequest(command: .trim, cookie: 2, offset: 0, length: 512))
        #expect(try peer.simpleReply().error != .success)
        try peer.request(NBDRequest(command: .writeZeroes, cookie: 3, offset: 0, length: 512))
        #expect(try peer.simpleReply().error != .success)
        try expectStillServing(server)
        #expect(try fileBytes(dir.file("disk.img")).allSatisfy { $0 == 0 })
    }

    @Test("a client idle in the handshake is dropped after --handshake-timeout; one in transmission is not")
    func handshakeTimeout() throws {
        let dir = TempDir()
        let server = try serve(dir, ["--handshake-timeout", "1"])
        defer { server.stop() }
        let working = try ServerRawPeer(port: server.port)
        try working.go(export: "disk")
        let idle = try ServerRawPeer(port: server.port)
        _ = try idle.read(18)
        #expect(idle.closedByServer())
        try working.request(NBDRequest(command: .flush, cookie: 5))
        #expect(try working.simpleReply() == SimpleReplyHeader(error: .success, cookie: 5))
    }

    @Test("--max-connections refuses the connection beyond the limit")
    func maxConnections() throws {
        let dir = TempDir()
        let server = try serve(dir, ["--max-connections", "2"])
        defer { server.stop() }
        // The harness probed the port once already; give the server a moment to see it close.
        usleep(200_000)
        let first = try ServerRawPeer(port: server.port)
        try first.go(export: "disk")
        let second = try ServerRawPeer(port: server.port)
        _ = try second.read(18)
        let third = try ServerRawPeer(port: server.port)
        #expect(third.closedByServer())
        try first.request(NBDRequest(command: .flush, cookie: 1))
        #expect(try first.simpleReply().error == .success)
    }

    @Test("SIGTERM with writes in flight: exit 0 and every acknowledged write is on disk")
    func sigtermKeepsAcknowledgedWrites() throws {
        let dir = TempDir()
        let server = try serve(dir, size: 8 << 20)
        let peer = try ServerRawPeer(port: server.port)
        try peer.go(export: "disk")
        let count = 96
        for i in 0..<count {
            try peer.request(NBDRequest(command: .write, cookie: UInt64(i), offset: UInt64(i) * 65536, length: 65536),
                             payload: [UInt8](repeating: UInt8(i % 250 + 1), count: 65536))
        }
        kill(server.process.pid, SIGTERM)
        var acknowledged: [Int] = []
        while let reply = try? peer.simpleReply() {
            if reply.error == .success { acknowledged.append(Int(reply.cookie)) }
        }
        let status = server.process.waitForExit(timeout: 30)
        #expect(status == 0, "server log:\n\(server.log)")
        let bytes = try fileBytes(dir.file("disk.img"))
        for i in acknowledged {
            #expect(bytes[i * 65536..<(i + 1) * 65536].allSatisfy { $0 == UInt8(i % 250 + 1) }, "acknowledged write \(i) lost")
        }
        #expect(!acknowledged.isEmpty)
    }

    @Test("CLI: missing image, busy port, bad flag and bad --export each fail with a clear message")
    func cliErrors() throws {
        let dir = TempDir()
        let missing = try run([Peers.swiftnbd, "serve", dir.file("nope.img"), "--bind", "127.0.0.1", "--port", String(FreePort.next())], timeout: 30)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("no such file"), "\(missing)")

        let server = try serve(dir)
        defer { server.stop() }
        try makeSparseFile(dir.file("other.img"), size: 1 << 20)
        let busy = try run([Peers.swiftnbd, "serve", dir.file("other.img"), "--bind", "127.0.0.1", "--port", String(server.port)], timeout: 30)
        #expect(busy.status != 0)
        #expect(busy.stderr.contains("Address already in use"), "\(busy)")

        let badFlag = try run([Peers.swiftnbd, "serve", dir.file("other.img"), "--no-such-flag"], timeout: 30)
        #expect(badFlag.status != 0)
        #expect(badFlag.stderr.contains("--no-such-flag"), "\(badFlag)")

        let badExport = try run([Peers.swiftnbd, "serve", "--export", "justaname"], timeout: 30)
        #expect(badExport.status != 0)
        #expect(badExport.stderr.contains("NAME=PATH"), "\(badExport)")

        let badFormat = try run([Peers.swiftnbd, "serve", dir.file("other.img"), "--format", "vmdk", "--port", String(FreePort.next())], timeout: 30)
        #expect(badFormat.status != 0)
        #expect(badFormat.stderr.contains("unknown image format"), "\(badFormat)")
    }
}
