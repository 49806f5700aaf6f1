import Foundation
import Testing

/// `swiftnbd serve` against QEMU's tools (qemu-img, qemu-io) over TCP and Unix sockets.
@Suite("Server ↔ QEMU tools", .serialized, .noLeftoverProcesses)
struct ServerQEMUInteropTests {
    @Test("qemu-img info sees the export's size through nbd:// and nbd+unix://",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func info(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 64 << 20)
        let tcp = try SwiftNBDServe([dir.file("disk.img"), "--name", "disk"])
        defer { tcp.stop() }
        let result = try runExpectingSuccess([qemu.img, "info", "--output=json", tcp.uri("disk")], server: tcp)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(json?["virtual-size"] as? Int == 64 << 20, "\(result)")

        let unix = try SwiftNBDServe([dir.file("disk.img"), "--name", "disk", "--read-only"], unixSocket: dir.file("nbd.sock"))
        defer { unix.stop() }
        let viaUnix = try runExpectingSuccess([qemu.img, "info", "--output=json", unix.uri("disk")], server: unix)
        let unixJSON = try JSONSerialization.jsonObject(with: Data(viaUnix.stdout.utf8)) as? [String: Any]
        #expect(unixJSON?["virtual-size"] as? Int == 64 << 20)
        // What was negotiated, from the server's side of the wire: extended headers with
        // QEMU 10, structured replies with 7.2.
        for server in [tcp, unix] {
            #expect(server.log.contains(qemu.serverLogReplyForm), "expected \(qemu.serverLogReplyForm) in:\n\(server.log)")
        }
    }

    @Test("qemu-io writes (plain, FUA, zeroes, zeroes that may trim), discards and flushes; a new connection reads them back",
          .enabled(if: Peers.available("qemu-io")), arguments: QEMUGeneration.all)
    func qemuIOWorkload(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        let image = dir.file("disk.img")
        try makePatternFile(image, size: 16 << 20, seed: 3)
        let server = try SwiftNBDServe([image, "--name", "disk"])
        let uri = server.uri("disk")
        try runExpectingSuccess([qemu.io, "-f", "raw", uri,
                                 "-c", "write -P 0xab 0 1M",
                                 "-c", "write -f -P 0xcd 1M 512k",
                                 "-c", "write -z 2M 1M",
                                 "-c", "write -z -u 3M 1M",
                                 "-c", "discard 4M 1M",
                                 "-c", "flush",
                                 "-c", "read -P 0xab 0 1M",
                                 "-c", "read -P 0xcd 1M 512k"], server: server)
        let check = try runExpectingSuccess([qemu.io, "-f", "raw", "-r", uri,
                                             "-c", "read -P 0xab 0 1M",
                                             "-c", "read -P 0xcd 1M 512k",
                                             "-c", "read -P 0 2M 2M"], server: server)
        #expect(!check.stdout.contains("Pattern verification failed"), "\(check)")
        #expect(server.log.contains(qemu.serverLogReplyForm), "\(server.log)")
        #expect(server.stop() == 0)
        // What the client saw is what is on disk after a clean stop.
        let bytes = try fileBytes(image)
        #expect(bytes[0..<(1 << 20)].allSatisfy { $0 == 0xab })
        #expect(bytes[(1 << 20)..<(3 << 19)].allSatisfy { $0 == 0xcd })
        #expect(bytes[(2 << 20)..<(4 << 20)].allSatisfy { $0 == 0 })
    }

    @Test("qemu-img convert copies the export out and back in, and qemu-img compare agrees",
          .enabled(if: Peers.available("qemu-img")), arguments: QEMUGeneration.all)
    func convertBothWays(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        try makePatternFile(dir.file("source.img"), size: 8 << 20, seed: 11)
        let source = try SwiftNBDServe([dir.file("source.img"), "--name", "src", "--read-only"])
        defer { source.stop() }
        try runExpectingSuccess([qemu.img, "convert", "-f", "raw", "-O", "raw", source.uri("src"), dir.file("copy.img")], server: source)
        #expect(filesEqual(dir.file("source.img"), dir.file("copy.img")))
        try runExpectingSuccess([qemu.img, "compare", "-f", "raw", "-F", "raw", source.uri("src"), dir.file("copy.img")], server: source)

        try makeSparseFile(dir.file("target.img"), size: 8 << 20)
        let target = try SwiftNBDServe([dir.file("target.img"), "--name", "dst"])
        try runExpectingSuccess([qemu.img, "convert", "-n", "-f", "raw", "-O", "raw", dir.file("source.img"), target.uri("dst")], server: target)
        try runExpectingSuccess([qemu.img, "compare", "-f", "raw", "-F", "raw", dir.file("source.img"), target.uri("dst")], server: target)
        #expect(target.stop() == 0)
        #expect(filesEqual(dir.file("source.img"), dir.file("target.img")))
    }

    @Test("qemu-img map shows the holes of a sparse image as zero, non-data ranges",
          .enabled(if: Peers.available("qemu-img", "qemu-io")), arguments: QEMUGeneration.all)
    func mapShowsHoles(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("sparse.img"), size: 32 << 20)
        try runExpectingSuccess([qemu.io, "-f", "raw", dir.file("sparse.img"), "-c", "write -P 0x11 8M 1M"], server: nil)
        let server = try SwiftNBDServe([dir.file("sparse.img"), "--read-only"])
        defer { server.stop() }
        let result = try runExpectingSuccess([qemu.img, "map", "-f", "raw", "--output=json", server.uri()], server: server)
        let runs = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] ?? []
        let summary = runs.map { "\($0["start"] as? Int ?? -1):\($0["length"] as? Int ?? -1):\($0["data"] as? Bool ?? true)" }
        #expect(summary == ["0:\(8 << 20):false", "\(8 << 20):\(1 << 20):true", "\(9 << 20):\(23 << 20):false"], "\(result)")
    }

    @Test("a second writer is refused by the image lock: qemu-io and another swiftnbd",
          .enabled(if: Peers.available("qemu-io")), arguments: QEMUGeneration.all)
    func imageLock(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 1 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img")])
        defer { server.stop() }
        let refused = try run([qemu.io, "-f", "raw", dir.file("disk.img"), "-c", "write 0 512"])
        #expect(!refused.succeeded)
        #expect(refused.stderr.contains("Failed to get \"write\" lock"), "\(refused)")
        let second = try run([Peers.swiftnbd, "serve", dir.file("disk.img"), "--bind", "127.0.0.1", "--port", String(FreePort.next())], timeout: 30)
        #expect(second.status != 0)
        #expect(second.stderr.contains("lock"), "\(second)")
        // Read-only inspection that shares writers still works, as with qemu-nbd.
        try runExpectingSuccess([qemu.img, "info", "-f", "raw", dir.file("disk.img")], server: server)
    }

    @Test("with --exit-on-disconnect the server flushes and exits 0 after qemu-io's writes",
          .enabled(if: Peers.available("qemu-io")), arguments: QEMUGeneration.all)
    func exitOnDisconnect(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 4 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img"), "--exit-on-disconnect"])
        try runExpectingSuccess([qemu.io, "-f", "raw", server.uri(), "-c", "write -P 0x5a 0 2M"], server: server)
        let status = server.process.waitForExit(timeout: 20)
        #expect(status == 0, "server log:\n\(server.log)")
        #expect(try fileBytes(dir.file("disk.img"))[0..<(2 << 20)].allSatisfy { $0 == 0x5a })
    }

    @Test("a 6 GiB WRITE_ZEROES: one 64-bit request from QEMU 10 (extended headers), 32-bit pieces from 7.2; zeroes either way",
          .enabled(if: Peers.available("qemu-io")), arguments: QEMUGeneration.all)
    func largeWriteZeroes(qemu: QEMUGeneration) throws {
        let dir = TempDir()
        let image = dir.file("big.img")
        try makeSparseFile(image, size: 16 << 30)
        // -vv logs every request the server receives, as it came off the wire.
        let server = try SwiftNBDServe([image, "--name", "disk", "-vv"])
        try runExpectingSuccess([qemu.io, "-f", "raw", server.uri("disk"),
                                 "-c", "write -P 0x5c 5G 1M",
                                 "-c", "write -z -n 4G 6G",
                                 "-c", "read -P 0 5G 1M"], server: server)
        #expect(server.stop() == 0)
        let lengths = server.log.split(separator: "\n").compactMap { line -> UInt64? in
            guard line.contains("NBD_CMD_WRITE_ZEROES offset"), let range = line.range(of: " length ") else { return nil }
            return UInt64(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(lengths.reduce(0, +) == 6 << 30, "\(lengths)")
        if qemu.speaksExtendedHeaders {
            #expect(lengths == [6 << 30], "QEMU 10 should send one 64-bit request: \(lengths)")
        } else {
            #expect(lengths.count > 1 && lengths.allSatisfy { $0 <= UInt64(UInt32.max) }, "\(lengths)")
        }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: image))
        defer { try? handle.close() }
        try handle.seek(toOffset: 5 << 30)
        #expect(try handle.read(upToCount: 1 << 20)?.allSatisfy { $0 == 0 } == true)
    }
}
