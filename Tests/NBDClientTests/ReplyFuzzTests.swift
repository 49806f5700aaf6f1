import Testing
import Foundation
import NBDClient
import NBDProtocol

/// Random chunks with the right magic and cookie (so they reach the chunk parsers) must end
/// every request with a result — success or a clean error — and never crash or hang the client.
@Suite("Client under random reply chunks", .serialized)
struct ReplyFuzzTests {
    @Test("random structured and extended chunks", arguments: [false, true])
    func randomChunks(extended: Bool) throws {
        var state: UInt64 = extended ? 99 : 7
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 17
        }
        let types: [UInt16] = [0, 1, 2, 3, 5, 6, 0x8001, 0x8002, 0x8003, 0x4242]
        for _ in 0..<40 {
            let chunks: [(type: UInt16, flags: UInt16, payload: [UInt8], length: UInt32)] = (0..<Int(1 + next() % 3)).map { i in
                let type = types[Int(next() % UInt64(types.count))]
                var payload = (0..<Int(next() % 48)).map { _ in UInt8(truncatingIfNeeded: next()) }
                if type == 1 || type == 2, payload.count >= 8, next() % 2 == 0 {
                    payload.replaceSubrange(0..<8, with: ScriptedServer.Peer.be64(next() % 8192)) // plausible offsets
                }
                // One chunk in five lies about its length.
                let length = next() % 5 == 0 ? UInt32(truncatingIfNeeded: next()) : UInt32(payload.count)
                return (type, i == 0 ? UInt16(next() % 2) : 1, payload, length)
            }
            var options = ScriptedServer.Options()
            options.extended = extended
            let plan = chunks
            let server = try ScriptedServer(options) { peer in
                let r = try peer.readRequest()
                for c in plan {
                    let length = c.length
                    if peer.extended {
                        try peer.extendedChunk(cookie: r.cookie, offset: r.offset, type: c.type, flags: ReplyFlags(rawValue: c.flags),
                                               payload: c.payload, length: UInt64(length))
                    } else {
                        try peer.chunk(cookie: r.cookie, type: c.type, flags: ReplyFlags(rawValue: c.flags), payload: c.payload, length: length)
                    }
                }
                // Hang up: the client must not wait forever for a DONE that never comes.
            }
            let connection = try NBDConnection.connect(try NBDURI(server.uri))
            let result = HostileServerTests.read(connection, at: 0, count: 4096)
            #expect(result != nil, "request never completed for chunks \(plan.map(\.type))")
            connection.close()
            #expect(server.finish())
        }
    }
}
