import Testing
import Foundation
import NBDClient
import NBDProtocol

/// The client against a peer that lies: every case must end in a clean error (and a dropped
/// connection for protocol violations), never a crash or a hang.
@Suite("Client against a hostile server", .serialized)
struct HostileServerTests {
    typealias Peer = ScriptedServer.Peer

    /// Submits a READ and waits (bounded) for its result.
    static func read(_ c: NBDConnection, at offset: UInt64 = 0, count: Int) -> Result<[UInt8], NBDClientError>? {
        final class Box: @unchecked Sendable { var result: Result<[UInt8], NBDClientError>?; let buffer: UnsafeMutableRawBufferPointer
            init(_ n: Int) { buffer = .allocate(byteCount: max(n, 1), alignment: 8) }
            deinit { buffer.deallocate() } }
        let box = Box(count)
        let done = DispatchSemaphore(value: 0)
        c.submitRead(into: UnsafeMutableRawBufferPointer(rebasing: box.buffer[0..<count]), at: offset) { result in
            box.result = result.map { [UInt8](UnsafeRawBufferPointer(rebasing: box.buffer[0..<count])) }
            done.signal()
        }
        guard done.wait(timeout: .now() + 10) == .success else { return nil }
        return box.result
    }

    /// Runs `script` as the server, reads `count` bytes, and expects a protocol violation.
    func expectViolation(_ options: ScriptedServer.Options = .init(), count: Int = 4096,
                         _ script: @escaping @Sendable (Peer, NBDRequest) throws -> Void) throws {
        let server = try ScriptedServer(options) { peer in
            let request = try peer.readRequest()
            try script(peer, request)
            // Wait for the client to hang up (bounded by the client's own behaviour).
            _ = try? peer.read(1)
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        let result = try #require(Self.read(connection, count: count), "the client hung")
        switch result {
        case .success: Issue.record("a broken reply was accepted")
        case .failure(let error): #expect(error.code == .protocolViolation, "\(error)")
        }
        #expect(connection.failure != nil, "the connection must be dropped")
        // Later requests fail at once instead of hanging.
        let after = try #require(Self.read(connection, count: 512))
        if case .success = after { Issue.record("a dead connection served a request") }
        connection.close()
        #expect(server.finish())
    }

    static let holeType: UInt16 = 2
    static let dataType: UInt16 = 1

    @Test("a reply to a cookie never sent drops the connection")
    func unknownCookie() throws {
        try expectViolation { peer, request in
            try peer.chunk(cookie: request.cookie &+ 1000, type: 0, flags: .done, payload: [])
        }
    }

    @Test("an unknown reply magic drops the connection")
    func unknownMagic() throws {
        try expectViolation { peer, _ in try peer.write([0xde, 0xad, 0xbe, 0xef] + [UInt8](repeating: 0, count: 28)) }
    }

    @Test("a data chunk before the request's start is refused")
    func dataBeforeStart() throws {
        try expectViolation { peer, r in
            // Offset wraps below the request: the classic signed/unsigned bug.
            try peer.chunk(cookie: r.cookie, type: Self.dataType, flags: .done,
                           payload: Peer.be64(UInt64.max - 10) + [UInt8](repeating: 1, count: 16))
        }
    }

    @Test("a data chunk running past the request's end is refused")
    func dataPastEnd() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.dataType, flags: .done,
                           payload: Peer.be64(r.offset + 4000) + [UInt8](repeating: 1, count: 200))
        }
    }

    @Test("overlapping data chunks are refused")
    func overlapping() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.dataType, payload: Peer.be64(r.offset) + [UInt8](repeating: 1, count: 2048))
            try peer.chunk(cookie: r.cookie, type: Self.dataType, flags: .done,
                           payload: Peer.be64(r.offset + 1024) + [UInt8](repeating: 2, count: 3072))
        }
    }

    @Test("a zero-size hole is refused")
    func zeroHole() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.holeType, flags: .done, payload: Peer.be64(r.offset) + Peer.be32(0))
        }
    }

    @Test("a hole chunk with a bogus length is refused")
    func bogusHoleLength() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.holeType, flags: .done, payload: Peer.be64(r.offset) + Peer.be32(4096) + [0, 0, 0, 0])
        }
    }

    @Test("an unknown non-error chunk type is refused")
    func unknownChunkType() throws {
        try expectViolation { peer, r in try peer.chunk(cookie: r.cookie, type: 3, flags: .done, payload: [1, 2, 3]) }
    }

    @Test("an oversize chunk is refused without reading or allocating it")
    func oversizeChunk() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.dataType, flags: .done, payload: Peer.be64(r.offset), length: 0xffff_ffff)
        }
    }

    @Test("an oversize error chunk is refused")
    func oversizeErrorChunk() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: 0x8001, flags: .done, payload: Peer.be32(5) + Peer.be16(0), length: 1 << 30)
        }
    }

    @Test("a NONE chunk without DONE is refused")
    func noneWithoutDone() throws {
        try expectViolation { peer, r in try peer.chunk(cookie: r.cookie, type: 0, payload: []) }
    }

    @Test("a successful READ that leaves bytes uncovered is refused")
    func incompleteCoverage() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: Self.dataType, flags: .done, payload: Peer.be64(r.offset) + [UInt8](repeating: 1, count: 100))
        }
    }

    @Test("a simple reply to READ after structured replies were negotiated is refused")
    func simpleReplyToStructuredRead() throws {
        try expectViolation { peer, r in try peer.simpleReply(cookie: r.cookie, data: [UInt8](repeating: 0, count: 4096)) }
    }

    @Test("a structured chunk when only simple replies were negotiated is refused")
    func structuredWhenSimple() throws {
        var options = ScriptedServer.Options()
        options.structured = false
        try expectViolation(options) { peer, r in try peer.chunk(cookie: r.cookie, type: 0, flags: .done, payload: []) }
    }

    @Test("an error chunk carrying error 0 is refused")
    func errorZero() throws {
        try expectViolation { peer, r in try peer.chunk(cookie: r.cookie, type: 0x8001, flags: .done, payload: Peer.be32(0) + Peer.be16(0)) }
    }

    @Test("an error chunk whose message runs past the chunk is refused")
    func errorMessageTooLong() throws {
        try expectViolation { peer, r in
            try peer.chunk(cookie: r.cookie, type: 0x8001, flags: .done, payload: Peer.be32(5) + Peer.be16(400) + Array("short".utf8))
        }
    }

    @Test("a server hanging up mid-reply fails the request cleanly")
    func hangUpMidReply() throws {
        let server = try ScriptedServer { peer in
            let r = try peer.readRequest()
            // Header promises 4104 bytes; only 10 arrive.
            try peer.write(StructuredChunkHeader(flags: .done, type: .offsetData, cookie: r.cookie, length: 4104).bytes + Peer.be64(r.offset) + [1, 2])
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        let result = try #require(Self.read(connection, count: 4096))
        if case .success = result { Issue.record("a truncated reply was accepted") }
        #expect(connection.failure != nil)
        connection.close()
        #expect(server.finish())
    }

    // MARK: Errors the connection survives

    @Test("an error chunk fails only its request, with the server's errno and message")
    func errorChunkIsTyped() throws {
        let server = try ScriptedServer { peer in
            let r1 = try peer.readRequest()
            try peer.chunk(cookie: r1.cookie, type: 0x8001, flags: .done, payload: Peer.be32(5) + Peer.be16(9) + Array("disk fell".utf8))
            let r2 = try peer.readRequest()
            // Unknown error type with a well-formed message: the request fails, as EINVAL.
            try peer.chunk(cookie: r2.cookie, type: 0x8003, flags: .done, payload: Peer.be32(1234) + Peer.be16(2) + Array("hm".utf8))
            let r3 = try peer.readRequest()
            try peer.chunk(cookie: r3.cookie, type: Self.dataType, flags: .done, payload: Peer.be64(r3.offset) + [UInt8](repeating: 7, count: Int(r3.length)))
            _ = try? peer.read(1)
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        let first = try #require(Self.read(connection, count: 512))
        guard case .failure(let error) = first else { Issue.record("expected EIO"); return }
        #expect(error.code == .commandFailed)
        #expect(error.errno == 5)
        #expect(error.serverMessage == "disk fell")
        let second = try #require(Self.read(connection, count: 512))
        guard case .failure(let unknown) = second else { Issue.record("expected a failure"); return }
        #expect(unknown.errno == 22, "unknown errno values count as EINVAL")
        let third = try #require(Self.read(connection, count: 512))
        #expect((try? third.get()) == [UInt8](repeating: 7, count: 512))
        #expect(connection.failure == nil)
        connection.close()
        #expect(server.finish())
    }

    @Test("data and hole chunks in any order are reassembled")
    func reassembly() throws {
        let server = try ScriptedServer { peer in
            let r = try peer.readRequest()
            let o = r.offset
            try peer.chunk(cookie: r.cookie, type: Self.dataType, payload: Peer.be64(o + 3072) + [UInt8](repeating: 3, count: 1024))
            try peer.chunk(cookie: r.cookie, type: Self.holeType, payload: Peer.be64(o + 1024) + Peer.be32(2048))
            try peer.chunk(cookie: r.cookie, type: Self.dataType, payload: Peer.be64(o) + [UInt8](repeating: 1, count: 1024))
            try peer.chunk(cookie: r.cookie, type: 0, flags: .done, payload: [])
            _ = try? peer.read(1)
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        let data = try #require(Self.read(connection, at: 8192, count: 4096)).get()
        #expect(data == [UInt8](repeating: 1, count: 1024) + [UInt8](repeating: 0, count: 2048) + [UInt8](repeating: 3, count: 1024))
        connection.close()
        #expect(server.finish())
    }

    @Test("block status chunks for unknown contexts or with zero-length extents are refused")
    func badBlockStatus() throws {
        for bad in [Peer.be32(99) + Peer.be32(4096) + Peer.be32(0), Peer.be32(1) + Peer.be32(0) + Peer.be32(0)] {
            let server = try ScriptedServer { peer in
                let r = try peer.readRequest()
                try peer.chunk(cookie: r.cookie, type: 5, flags: .done, payload: bad)
                _ = try? peer.read(1)
            }
            let connection = try NBDConnection.connect(try NBDURI(server.uri))
            #expect(throws: NBDClientError.self) { try connection.perform(.blockStatus, offset: 0, length: 4096) }
            #expect(connection.failure?.code == .protocolViolation)
            connection.close()
            #expect(server.finish())
        }
    }

    @Test("requests the export cannot take are refused before reaching the wire")
    func localValidation() throws {
        var options = ScriptedServer.Options()
        options.flags = [.hasFlags, .readOnly]
        let server = try ScriptedServer(options) { peer in _ = try? peer.read(1) }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        #expect(throws: NBDClientError.self) { try [UInt8](repeating: 0, count: 16).withUnsafeBytes { try connection.write($0, at: 0) } }
        #expect(throws: NBDClientError.self) { try connection.perform(.trim, offset: 0, length: 512) }
        #expect(throws: NBDClientError.self) { try connection.perform(.flush) }
        let past = try #require(Self.read(connection, at: options.size - 100, count: 200))
        guard case .failure(let error) = past else { Issue.record("read past the end was sent"); return }
        #expect(error.code == .invalidArgument)
        #expect(connection.failure == nil)
        connection.close()
        #expect(server.finish())
    }

    // MARK: Extended headers

    static var extendedOptions: ScriptedServer.Options {
        var options = ScriptedServer.Options()
        options.extended = true
        return options
    }

    @Test("extended chunks are reassembled and extended status chunks decoded")
    func extendedHappyPath() throws {
        let server = try ScriptedServer(Self.extendedOptions) { peer in
            let r = try peer.readRequest()
            try peer.extendedChunk(cookie: r.cookie, offset: r.offset, type: Self.holeType, payload: Peer.be64(r.offset) + Peer.be32(512))
            try peer.extendedChunk(cookie: r.cookie, offset: r.offset, type: Self.dataType, flags: .done,
                                   payload: Peer.be64(r.offset + 512) + [UInt8](repeating: 9, count: 512))
            let s = try peer.readRequest()
            // BLOCK_STATUS_EXT: context 1, 2 extents of 64-bit lengths.
            try peer.extendedChunk(cookie: s.cookie, offset: s.offset, type: 6, flags: .done,
                                   payload: Peer.be32(1) + Peer.be32(2) + Peer.be64(4096) + Peer.be64(3) + Peer.be64(1 << 40) + Peer.be64(0))
            _ = try? peer.read(1)
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        #expect(connection.export.replyMode == .extended)
        let data = try #require(Self.read(connection, at: 0, count: 1024)).get()
        #expect(data == [UInt8](repeating: 0, count: 512) + [UInt8](repeating: 9, count: 512))
        let reply = try connection.perform(.blockStatus, offset: 0, length: 8192)
        guard case .blockStatus(let status) = reply else { Issue.record("no status"); return }
        #expect(status.extentsByContext[1] == [BlockStatusExtent(length: 4096, flags: 3), BlockStatusExtent(length: 1 << 40, flags: 0)])
        connection.close()
        #expect(server.finish())
    }

    @Test("an extended chunk claiming a 64-bit length is refused without allocating it")
    func extendedOversize() throws {
        try expectViolation(Self.extendedOptions) { peer, r in
            try peer.extendedChunk(cookie: r.cookie, offset: r.offset, type: Self.dataType, flags: .done, payload: [], length: UInt64.max)
        }
    }

    @Test("a compact status chunk in extended mode is refused")
    func compactStatusInExtendedMode() throws {
        let server = try ScriptedServer(Self.extendedOptions) { peer in
            let r = try peer.readRequest()
            try peer.extendedChunk(cookie: r.cookie, offset: r.offset, type: 5, flags: .done, payload: Peer.be32(1) + Peer.be32(512) + Peer.be32(0))
            _ = try? peer.read(1)
        }
        let connection = try NBDConnection.connect(try NBDURI(server.uri))
        #expect(throws: NBDClientError.self) { try connection.perform(.blockStatus, offset: 0, length: 512) }
        #expect(connection.failure?.code == .protocolViolation)
        connection.close()
        #expect(server.finish())
    }

    @Test("a simple reply in extended mode is refused")
    func simpleInExtendedMode() throws {
        try expectViolation(Self.extendedOptions) { peer, r in try peer.simpleReply(cookie: r.cookie) }
    }

    @Test("a server that accepts and never greets fails the connect after the handshake timeout")
    func silentServer() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-silent-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/s.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(fd, 4) == 0)
        // The kernel completes the connection from the backlog; nobody ever writes a byte.
        var config = NBDClientConfiguration()
        config.handshakeTimeout = 0.3
        do {
            _ = try NBDConnection.connect(.unix(path: path), configuration: config)
            Issue.record("connected to a server that never greeted")
        } catch let error as NBDClientError {
            #expect(error.code == .negotiationFailed)
            #expect(error.message.contains("in time"), "\(error)")
        }
    }
}
