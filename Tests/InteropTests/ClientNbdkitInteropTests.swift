import Foundation
import Testing
import BlockDevices
import NBDClient
import NBDProtocol
import NBDTLS

/// Our client library and `swiftnbd info/copy` against nbdkit plugins and filters.
@Suite("Client: against nbdkit", .serialized, .noLeftoverProcesses)
struct ClientNbdkitInteropTests {
    typealias P = ClientInteropPeers

    /// A provider that must never be reached: the tests using it expect a refusal before TLS.
    struct UnreachableTLS: ClientTLSProvider {
        func startTLS(on socket: SocketStream, hostname: String?) throws -> any ByteStream {
            throw NBDClientError(.tls, "test provider: TLS must not be attempted here")
        }
    }

    @Test("copy of sparse-random equals nbdcopy's, and info --map equals nbdinfo --map",
          .enabled(if: Peers.available("nbdkit", "nbdcopy", "nbdinfo")))
    func sparseRandom() throws {
        let dir = TempDir("client-sparse")
        let (server, uri) = try P.nbdkit(["sparse-random", "64M", "seed=7"], in: dir)
        defer { server.stop() }
        let ours = dir.file("ours.raw"), theirs = dir.file("theirs.raw")
        let copy = try P.swiftnbd(["copy", uri, ours])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        #expect(try run(["nbdcopy", uri, theirs]).succeeded)
        #expect(filesEqual(ours, theirs))
        // Sparse-aware: the copy holds far fewer blocks than its size.
        let attributes = try FileManager.default.attributesOfItem(atPath: ours)
        #expect((attributes[.size] as? UInt64) == 64 << 20)

        let map = try P.swiftnbd(["info", "--map", uri])
        let reference = try run(["nbdinfo", "--map", uri])
        #expect(map.succeeded, "\(map)")
        #expect(map.stdout == reference.stdout, "ours:\n\(map.stdout.prefix(2000))\nnbdinfo:\n\(reference.stdout.prefix(2000))")
        let json = try P.swiftnbd(["info", "--map", "--json", uri])
        #expect(json.stdout.contains("\"description\": \"hole,zero\""))
    }

    @Test("without structured replies (--no-sr) the client falls back to simple replies and still copies correctly",
          .enabled(if: Peers.available("nbdkit")))
    func noStructuredReplies() throws {
        let dir = TempDir("client-nosr")
        let image = dir.file("src.raw")
        try makePatternFile(image, size: 6 << 20, seed: 4)
        let (server, uri) = try P.nbdkit(["--no-sr", "file", image], in: dir)
        defer { server.stop() }
        let connection = try NBDConnection.connect(try NBDURI(uri))
        #expect(connection.export.replyMode == .simple)
        #expect(connection.export.metaContexts.isEmpty)
        #expect(!connection.export.flags.contains(.sendDF))
        #expect(throws: NBDClientError.self) { try connection.perform(.blockStatus, offset: 0, length: 4096) }
        connection.close()

        let info = try P.swiftnbd(["info", uri])
        #expect(info.stdout.contains("using simple packets"), "\(info)")
        let out = dir.file("out.raw")
        let copy = try P.swiftnbd(["copy", uri, out])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        #expect(filesEqual(image, out))
    }

    @Test("an oldstyle server works in plaintext and is refused when TLS is required",
          .enabled(if: Peers.available("nbdkit")))
    func oldstyle() throws {
        let dir = TempDir("client-old")
        let (server, uri) = try P.nbdkit(["-o", "pattern", "1M"], in: dir)
        defer { server.stop() }
        let parsed = try NBDURI(uri)
        let connection = try NBDConnection.connect(parsed)
        #expect(connection.export.handshake == .oldstyle)
        var expected = [UInt8]()
        for word in UInt64(4096 / 8)..<UInt64(8192 / 8) { expected += (0..<8).map { UInt8(truncatingIfNeeded: (word * 8) >> (56 - 8 * $0)) } }
        var buffer = [UInt8](repeating: 0, count: 4096)
        try buffer.withUnsafeMutableBytes { try connection.read(into: $0, at: 4096) }
        #expect(buffer == expected, "nbdkit pattern: each 8 bytes hold their own offset")
        connection.close()

        let config = NBDClientConfiguration(tlsPolicy: .require, tlsProvider: UnreachableTLS())
        do {
            _ = try NBDConnection.connect(parsed.transport, configuration: config)
            Issue.record("TLS-required connection to an oldstyle server succeeded")
        } catch let error as NBDClientError {
            #expect(error.code == .tls)
            #expect(error.message.contains("oldstyle"), "\(error)")
        }
    }

    @Test("require refuses a server that answers STARTTLS with an error, before sending an export name",
          .enabled(if: Peers.available("nbdkit")))
    func requireRefusesPlaintextServer() throws {
        let dir = TempDir("client-notls")
        let (server, uri) = try P.nbdkit(["memory", "1M"], in: dir)
        defer { server.stop() }
        let config = NBDClientConfiguration(exportName: "secret", tlsPolicy: .require, tlsProvider: UnreachableTLS())
        do {
            _ = try NBDConnection.connect(try NBDURI(uri).transport, configuration: config)
            Issue.record("TLS-required connection to a plaintext server succeeded")
        } catch let error as NBDClientError {
            #expect(error.code == .tls)
            #expect(error.description.contains("STARTTLS"), "\(error)")
        }
        // allow falls back to plaintext on the same server.
        let allow = NBDClientConfiguration(tlsPolicy: .allow, tlsProvider: UnreachableTLS())
        let connection = try NBDConnection.connect(try NBDURI(uri).transport, configuration: allow)
        #expect(!connection.export.tlsActive)
        connection.close()
    }

    @Test("read errors injected by the error filter fail the copy with a message, never silently",
          .enabled(if: Peers.available("nbdkit")))
    func readErrorsFailCopy() throws {
        let dir = TempDir("client-err")
        let (server, uri) = try P.nbdkit(["--filter=error", "random", "16M", "error=EIO", "error-pread-rate=50%"], in: dir)
        defer { server.stop() }
        let out = dir.file("out.raw")
        let copy = try P.swiftnbd(["copy", "--request-size", "65536", uri, out])
        #expect(!copy.succeeded, "a copy with failed reads reported success")
        #expect(copy.stderr.contains("EIO"), "\(copy)")

        // Through the library: a typed error, and the connection survives it.
        let connection = try NBDConnection.connect(try NBDURI(uri))
        var failures = 0
        for i in 0..<20 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            do {
                try buffer.withUnsafeMutableBytes { try connection.read(into: $0, at: UInt64(i) * 4096) }
            } catch let error as NBDClientError {
                failures += 1
                #expect(error.code == .commandFailed)
                #expect(error.errno == 5)
            }
        }
        #expect(failures > 0)
        #expect(connection.failure == nil)
        connection.close()
    }

    @Test("write errors injected by the error filter fail the copy",
          .enabled(if: Peers.available("nbdkit")))
    func writeErrorsFailCopy() throws {
        let dir = TempDir("client-werr")
        let source = dir.file("src.raw")
        try makePatternFile(source, size: 8 << 20, seed: 2)
        let (server, uri) = try P.nbdkit(["--filter=error", "memory", "8M", "error=ENOSPC", "error-pwrite-rate=100%"], in: dir)
        defer { server.stop() }
        let copy = try P.swiftnbd(["copy", source, uri])
        #expect(!copy.succeeded)
        #expect(copy.stderr.contains("ENOSPC"), "\(copy)")
    }

    @Test("slow, out-of-order replies (delay filter) still copy byte for byte",
          .enabled(if: Peers.available("nbdkit", "nbdcopy")))
    func delayedReplies() throws {
        let dir = TempDir("client-delay")
        let (server, uri) = try P.nbdkit(["--filter=delay", "pattern", "16M", "rdelay=3ms"], in: dir)
        defer { server.stop() }
        let ours = dir.file("ours.raw"), theirs = dir.file("theirs.raw")
        let copy = try P.swiftnbd(["copy", "--request-size", "65536", "--verify", uri, ours])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        #expect(try run(["nbdcopy", uri, theirs]).succeeded)
        #expect(filesEqual(ours, theirs))
    }

    @Test("several connections to one multi-conn export see each other's flushed writes",
          .enabled(if: Peers.available("nbdkit")))
    func multiConn() throws {
        let dir = TempDir("client-mc")
        let (server, uri) = try P.nbdkit(["memory", "8M"], in: dir)
        defer { server.stop() }
        let export = try RemoteExport.open(try NBDURI(uri), connections: 4)
        #expect(export.connections.count == 4)
        #expect(export.capabilities.contains(.multiConn))
        let block = [UInt8](repeating: 0x5a, count: 65536)
        for (i, c) in export.connections.enumerated() {
            try block.withUnsafeBytes { try c.write($0, at: UInt64(i) << 20) }
        }
        try export.flush()
        for (i, c) in export.connections.enumerated() {
            var back = [UInt8](repeating: 0, count: 65536)
            let other = export.connections[(i + 1) % 4]
            _ = c
            try back.withUnsafeMutableBytes { try other.read(into: $0, at: UInt64(i) << 20) }
            #expect(back == block)
        }
        let extents = try export.extents(offset: 0, length: 8 << 20)
        #expect(extents.contains { $0.flags.contains(.zero) })
        #expect(extents.contains { !$0.flags.contains(.zero) })
        try export.close()

        let info = try P.swiftnbd(["info", "--json", uri])
        #expect(info.stdout.contains("\"can_multi_conn\": true"), "\(info)")
        #expect(info.stdout.contains("\"export-size\": 8388608"))
    }

    @Test("NBD to NBD: failed writes and failed zeroing of the destination both fail the copy",
          .enabled(if: Peers.available("nbdkit")))
    func destinationErrorsFailPipelinedCopy() throws {
        let dir = TempDir("client-n2n-err")
        // pattern: every byte is data (exercises WRITE); sparse-random 32M seed=3: all zero runs (WRITE_ZEROES).
        let (pattern, patternURI) = try P.nbdkit(["pattern", "32M"], in: dir)
        defer { pattern.stop() }
        let (source, sourceURI) = try P.nbdkit(["sparse-random", "32M", "seed=3"], in: dir)
        defer { source.stop() }
        for (from, filter) in [(patternURI, "error-pwrite-rate=100%"), (sourceURI, "error-zero-rate=100%")] {
            let (target, targetURI) = try P.nbdkit(["--filter=error", "memory", "32M", "error=EIO", filter], in: dir)
            defer { target.stop() }
            let copy = try P.swiftnbd(["copy", from, targetURI])
            #expect(!copy.succeeded, "\(filter): copy reported success")
            #expect(copy.stderr.contains("EIO"), "\(filter): \(copy)")
        }
        // And without injected errors the same copy succeeds and verifies.
        let (target, targetURI) = try P.nbdkit(["memory", "32M"], in: dir)
        defer { target.stop() }
        for from in [patternURI, sourceURI] {
            let good = try P.swiftnbd(["copy", "--verify", from, targetURI])
            #expect(good.succeeded, "\(good)")
        }
    }
}
