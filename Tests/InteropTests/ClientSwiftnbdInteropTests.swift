import Foundation
import Testing
import NBDClient
import NBDProtocol

/// Our client against our own server (`swiftnbd serve`, the built binary), end to end.
@Suite("Client: against swiftnbd serve", .serialized, .noLeftoverProcesses)
struct ClientSwiftnbdInteropTests {
    typealias P = ClientInteropPeers

    static func serve(_ arguments: [String], in dir: TempDir) throws -> (server: ServerProcess, socket: String) {
        let socket = dir.file("swiftnbd-\(UUID().uuidString.prefix(6)).sock")
        let server = try withUnblockedSignals {
            try ServerProcess([Peers.swiftnbd, "serve", "--unix", socket] + arguments, listener: .unix(path: socket))
        }
        return (server, socket)
    }

    @Test("the async API does every command against our server, with the best reply format it offers")
    func everyCommand() async throws {
        let dir = TempDir("client-own")
        let image = dir.file("disk.raw")
        try makePatternFile(image, size: 8 << 20, seed: 21)
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: image)))
        let (server, socket) = try Self.serve(["--name", "disk", image], in: dir)
        defer { server.stop() }

        let connection = try await NBDConnection.connect("nbd+unix:///disk?socket=\(socket)")
        #expect(connection.export.size == 8 << 20)
        #expect(connection.export.replyMode != .simple, "\(server.log)")
        #expect(try await connection.read(at: 0, count: 8 << 20) == original)
        #expect(try await connection.read(at: 777, count: 5000) == Array(original[777..<5777]))
        let block = [UInt8](repeating: 0xee, count: 131072)
        try await connection.write(block, at: 1 << 20, fua: connection.export.flags.contains(.sendFUA))
        #expect(try await connection.read(at: 1 << 20, count: 131072) == block)
        if connection.export.flags.contains(.sendWriteZeroes) {
            try await connection.writeZeroes(at: 4 << 20, length: 1 << 20)
            #expect(try await connection.read(at: 4 << 20, count: 1 << 20) == [UInt8](repeating: 0, count: 1 << 20))
        }
        if connection.export.flags.contains(.sendTrim) { try await connection.trim(at: 6 << 20, length: 65536) }
        if connection.export.flags.contains(.sendFlush) { try await connection.flush() }
        if connection.export.metaContextID("base:allocation") != nil {
            let status = try await connection.blockStatus(at: 0, length: 8 << 20)
            #expect(!status.extentsByContext.isEmpty)
        }
        // Many requests in flight on one connection, completed out of order by the server's workers.
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<32 {
                group.addTask {
                    let offset = UInt64(i) * 65536
                    let data = try await connection.read(at: offset, count: 65536)
                    return data.count == 65536
                }
            }
            for try await ok in group { #expect(ok) }
        }
        await connection.disconnect()
        server.stop()
        let after = [UInt8](try Data(contentsOf: URL(fileURLWithPath: image)))
        #expect(Array(after[(1 << 20)..<((1 << 20) + 131072)]) == block)
        #expect(Array(after[0..<(1 << 20)]) == Array(original[0..<(1 << 20)]))
    }

    @Test("copy to and from our server round-trips, and info --map equals nbdinfo --map",
          .enabled(if: Peers.available("nbdinfo")))
    func copyRoundTrip() throws {
        let dir = TempDir("client-own-copy")
        let source = dir.file("src.raw"), target = dir.file("dst.raw"), back = dir.file("back.raw")
        try makePatternFile(source, size: 16 << 20, seed: 8)
        try makeSparseFile(target, size: 16 << 20)
        let (server, socket) = try Self.serve(["--name", "t", target], in: dir)
        defer { server.stop() }
        let uri = "nbd+unix:///t?socket=\(socket)"
        let up = try P.swiftnbd(["copy", "--flush", "--verify", source, uri])
        #expect(up.succeeded, "\(up)\n\(server.log)")
        let down = try P.swiftnbd(["copy", uri, back])
        #expect(down.succeeded, "\(down)\n\(server.log)")
        #expect(filesEqual(source, back))
        let ours = try P.swiftnbd(["info", "--map", uri])
        let theirs = try run(["nbdinfo", "--map", uri])
        #expect(ours.succeeded, "\(ours)")
        #expect(ours.stdout == theirs.stdout, "ours:\n\(ours.stdout)\nnbdinfo:\n\(theirs.stdout)")
        server.stop()
        #expect(filesEqual(source, target))
    }

    @Test("info --list shows every export with its description, like nbdinfo --list",
          .enabled(if: Peers.available("nbdinfo")))
    func listing() throws {
        let dir = TempDir("client-own-list")
        let a = dir.file("a.raw"), b = dir.file("b.raw")
        try makePatternFile(a, size: 1 << 20)
        try makePatternFile(b, size: 2 << 20)
        let (server, socket) = try Self.serve(["--export", "alpha=\(a),desc=First disk", "--export", "beta=\(b),ro"], in: dir)
        defer { server.stop() }
        let uri = "nbd+unix:///?socket=\(socket)"
        let ours = try P.swiftnbd(["info", "--list", "--json", uri])
        #expect(ours.succeeded, "\(ours)\n\(server.log)")
        #expect(ours.stdout.contains("\"export-name\": \"alpha\""), "\(ours.stdout)")
        #expect(ours.stdout.contains("\"export-name\": \"beta\""))
        #expect(ours.stdout.contains("\"description\": \"First disk\""))
        #expect(ours.stdout.contains("\"export-size\": 2097152"))
        let theirs = try run(["nbdinfo", "--list", "--json", uri])
        #expect(theirs.stdout.contains("\"alpha\"") && theirs.stdout.contains("\"beta\""))
        let text = try P.swiftnbd(["info", "--list", uri])
        #expect(text.stdout.contains("export=\"beta\""))
        #expect(text.stdout.contains("is_read_only: true"), "\(text.stdout)")
    }

    @Test("copy and info over PSK TLS (nbds+unix) against our server, and a plaintext URI is refused")
    func copyOverTLS() throws {
        let dir = TempDir("client-own-tls")
        let source = dir.file("src.raw"), target = dir.file("dst.raw"), back = dir.file("back.raw")
        let keys = dir.file("keys.psk")
        try "alice:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n".write(toFile: keys, atomically: true, encoding: .utf8)
        try makePatternFile(source, size: 6 << 20, seed: 12)
        try makeSparseFile(target, size: 6 << 20)
        let (server, socket) = try Self.serve(["--tls-psk", keys, "--name", "secure", target], in: dir)
        defer { server.stop() }
        let uri = "nbds+unix://alice@/secure?socket=\(socket)&tls-psk-file=\(keys)"
        let info = try P.swiftnbd(["info", uri])
        #expect(info.succeeded, "\(info)\n\(server.log)")
        #expect(info.stdout.contains("with TLS"), "\(info.stdout)")
        let up = try P.swiftnbd(["copy", "--flush", source, uri])
        #expect(up.succeeded, "\(up)\n\(server.log)")
        let down = try P.swiftnbd(["copy", "--progress", uri, back])
        #expect(down.succeeded, "\(down)")
        #expect(down.stderr.contains("100%"), "a forced progress bar ends at 100%: \(down.stderr)")
        #expect(filesEqual(source, back))
        let plain = try P.swiftnbd(["info", "nbd+unix:///secure?socket=\(socket)"])
        #expect(!plain.succeeded)
        #expect(plain.stderr.contains("TLS"), "\(plain)")
    }

    @Test("NBD to NBD copy between our server and qemu-nbd lands byte for byte",
          .enabled(if: Peers.available("qemu-nbd")))
    func nbdToNbd() throws {
        let dir = TempDir("client-own-n2n")
        let source = dir.file("src.raw"), target = dir.file("dst.raw")
        try makePatternFile(source, size: 12 << 20, seed: 31)
        try makeSparseFile(target, size: 12 << 20)
        let (ours, socket) = try Self.serve(["--read-only", "--name", "src", source], in: dir)
        defer { ours.stop() }
        let (theirs, targetURI) = try P.qemuNBD(["-f", "raw", target], in: dir)
        defer { theirs.stop() }
        let copy = try P.swiftnbd(["copy", "--verify", "nbd+unix:///src?socket=\(socket)", targetURI])
        #expect(copy.succeeded, "\(copy)\n\(ours.log)\n\(theirs.log)")
        theirs.stop()
        #expect(filesEqual(source, target))
    }

    @Test("--progress-fd writes N/100 lines ending at 100/100")
    func progressFD() throws {
        let dir = TempDir("client-progress")
        let source = dir.file("src.raw"), target = dir.file("dst.raw"), log = dir.file("progress.txt")
        try makePatternFile(source, size: 4 << 20, seed: 2)
        let result = try run(["sh", "-c", "exec \"$0\" copy --progress-fd 3 \"$1\" \"$2\" 3>\"$3\"", Peers.swiftnbd, source, target, log])
        #expect(result.succeeded, "\(result)")
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(lines.last == "100/100", "\(lines)")
        // Never a stale periodic line after the final one (the reporter thread and the final
        // report raced; ThreadSanitizer found it): percentages only go up, 100 comes once.
        let percents = lines.compactMap { Int($0.split(separator: "/").first ?? "") }
        #expect(percents.count == lines.count && percents == percents.sorted(), "\(lines)")
        #expect(lines.filter { $0 == "100/100" }.count == 1, "\(lines)")
        #expect(filesEqual(source, target))
        let bad = try P.swiftnbd(["copy", "--progress-fd", "77", source, target])
        #expect(!bad.succeeded)
    }
}
