import Foundation
import Testing
import NBDClient
import NBDProtocol

/// Our client library and `swiftnbd info/copy` against qemu-nbd and qemu-storage-daemon.
@Suite("Client: against qemu-nbd and qemu-storage-daemon", .serialized, .noLeftoverProcesses)
struct ClientQemuInteropTests {
    typealias P = ClientInteropPeers

    static func bytes(_ path: String, _ range: Range<Int>) throws -> [UInt8] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return [UInt8](data[range])
    }

    @Test("the async API reads, writes, zeroes, trims, caches and flushes a raw image served by qemu-nbd",
          .enabled(if: Peers.available("qemu-nbd")), arguments: QEMUGeneration.all)
    func asyncAPIAgainstQemuNBD(qemu: QEMUGeneration) async throws {
        let dir = TempDir("client-qemu")
        let image = dir.file("disk.raw")
        try makePatternFile(image, size: 4 << 20, seed: 11)
        let original = try Self.bytes(image, 0..<(4 << 20))
        let (server, uri) = try P.qemuNBD(["-f", "raw", image], in: dir, qemu: qemu)
        defer { server.stop() }

        let connection = try await NBDConnection.connect(uri)
        #expect(connection.export.size == 4 << 20)
        // qemu-nbd 7.2 offers structured replies, 10 extended headers, and we take the best.
        #expect(connection.export.replyMode == (qemu.speaksExtendedHeaders ? .extended : .structured))
        #expect(connection.export.metaContextID("base:allocation") != nil)
        // Reads at unaligned offsets and across the maximum payload.
        #expect(try await connection.read(at: 0, count: 4096) == Array(original[0..<4096]))
        #expect(try await connection.read(at: 12345, count: 999) == Array(original[12345..<(12345 + 999)]))
        #expect(try await connection.read(at: 0, count: 4 << 20) == original)

        let pattern = [UInt8]((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try await connection.write(pattern, at: 1 << 20, fua: true)
        #expect(try await connection.read(at: 1 << 20, count: 65536) == pattern)
        try await connection.writeZeroes(at: 2 << 20, length: 65536, noHole: true)
        #expect(try await connection.read(at: 2 << 20, count: 65536) == [UInt8](repeating: 0, count: 65536))
        try await connection.trim(at: 3 << 20, length: 65536)
        try await connection.cache(at: 0, length: 65536)
        try await connection.flush()
        let status = try await connection.blockStatus(at: 0, length: 4 << 20)
        let id = try #require(connection.export.metaContextID("base:allocation"))
        let extents = try #require(status.extentsByContext[id])
        #expect(!extents.isEmpty)
        await connection.disconnect()
        server.stop()

        let after = try Self.bytes(image, 0..<(4 << 20))
        #expect(Array(after[(1 << 20)..<((1 << 20) + 65536)]) == pattern)
        #expect(Array(after[(2 << 20)..<((2 << 20) + 65536)]) == [UInt8](repeating: 0, count: 65536))
        #expect(Array(after[0..<(1 << 20)]) == Array(original[0..<(1 << 20)]))
    }

    @Test("server errors reach the caller as typed errors with the server's errno",
          .enabled(if: Peers.available("qemu-nbd")))
    func readOnlyExportRefusesWrites() async throws {
        let dir = TempDir("client-qemu-ro")
        let image = dir.file("ro.raw")
        try makePatternFile(image, size: 1 << 20)
        let (server, uri) = try P.qemuNBD(["-r", "-f", "raw", image], in: dir)
        defer { server.stop() }
        let connection = try await NBDConnection.connect(uri)
        #expect(connection.export.flags.contains(.readOnly))
        await #expect(throws: NBDClientError.self) { try await connection.write([1, 2, 3], at: 0) }
        // A request past the end is refused locally, and the connection stays usable.
        await #expect(throws: NBDClientError.self) { _ = try await connection.read(at: (1 << 20) - 10, count: 20) }
        #expect(try await connection.read(at: 0, count: 16).count == 16)
        await connection.disconnect()
    }

    @Test("copy of a qcow2 export equals qemu-img convert, and info --map equals nbdinfo --map",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img", "qemu-io", "nbdinfo")), arguments: QEMUGeneration.all)
    func qcow2CopyAndMap(qemu: QEMUGeneration) throws {
        let dir = TempDir("client-qcow2")
        let image = dir.file("disk.qcow2")
        #expect(try run([qemu.img, "create", "-q", "-f", "qcow2", image, "64M"]).succeeded)
        let io = try run([qemu.io, "-f", "qcow2", "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 10M 512k",
                          "-c", "write -z 20M 1M", "-c", "write -P 0x11 63M 1M", image])
        #expect(io.succeeded, "\(io)")
        let (server, uri) = try P.qemuNBD(["-f", "qcow2", image], in: dir, qemu: qemu)
        defer { server.stop() }

        let out = dir.file("out.raw")
        let copy = try P.swiftnbd(["copy", uri, out])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        let reference = dir.file("ref.raw")
        #expect(try run([qemu.img, "convert", "-U", "-O", "raw", image, reference]).succeeded)
        #expect(filesEqual(out, reference))

        let described = try P.swiftnbd(["info", uri])
        #expect(described.stdout.contains(qemu.clientNegotiatedLine), "\(described)")
        let ours = try P.swiftnbd(["info", "--map", uri])
        let theirs = try run(["nbdinfo", "--map", uri])
        #expect(ours.succeeded, "\(ours)")
        #expect(ours.stdout == theirs.stdout, "ours:\n\(ours.stdout)\nnbdinfo:\n\(theirs.stdout)")
        #expect(ours.stdout.contains("data"))

        // A qcow2 file as the copy source: guest contents, not container bytes.
        let fromFile = dir.file("fromfile.raw")
        server.stop()
        let local = try P.swiftnbd(["copy", image, fromFile])
        #expect(local.succeeded, "\(local)")
        #expect(filesEqual(fromFile, reference))
    }

    @Test("qemu:allocation-depth from qemu-nbd -A maps like nbdinfo",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img", "qemu-io", "nbdinfo")))
    func allocationDepth() throws {
        let dir = TempDir("client-depth")
        let base = dir.file("base.qcow2"), top = dir.file("top.qcow2")
        #expect(try run(["qemu-img", "create", "-q", "-f", "qcow2", base, "16M"]).succeeded)
        #expect(try run(["qemu-io", "-f", "qcow2", "-c", "write -P 1 0 2M", base]).succeeded)
        #expect(try run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top]).succeeded)
        #expect(try run(["qemu-io", "-f", "qcow2", "-c", "write -P 2 1M 2M", top]).succeeded)
        let (server, uri) = try P.qemuNBD(["-A", "-f", "qcow2", top], in: dir)
        defer { server.stop() }
        let ours = try P.swiftnbd(["info", "--map", "--map-context", "qemu:allocation-depth", uri])
        let theirs = try run(["nbdinfo", "--map=qemu:allocation-depth", uri])
        #expect(ours.succeeded, "\(ours)\n\(server.log)")
        #expect(ours.stdout == theirs.stdout, "ours:\n\(ours.stdout)\nnbdinfo:\n\(theirs.stdout)")
        #expect(ours.stdout.contains("backing depth 2"))
        #expect(ours.stdout.contains("local"))
    }

    @Test("a dirty bitmap exported with qemu-nbd -B maps like nbdinfo",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img", "qemu-io", "nbdinfo")), arguments: QEMUGeneration.all)
    func dirtyBitmap(qemu: QEMUGeneration) throws {
        let dir = TempDir("client-bitmap")
        let image = dir.file("disk.qcow2")
        #expect(try run([qemu.img, "create", "-q", "-f", "qcow2", image, "16M"]).succeeded)
        let add = try run([qemu.img, "bitmap", "--add", image, "b0"])
        #expect(add.succeeded, "\(add)")
        #expect(try run([qemu.io, "-f", "qcow2", "-c", "write -P 3 4M 128k", image]).succeeded)
        let (server, uri) = try P.qemuNBD(["-B", "b0", "-f", "qcow2", image], in: dir, qemu: qemu)
        defer { server.stop() }
        let ours = try P.swiftnbd(["info", "--map", "--map-context", "qemu:dirty-bitmap:b0", uri])
        let theirs = try run(["nbdinfo", "--map=qemu:dirty-bitmap:b0", uri])
        #expect(ours.succeeded, "\(ours)\n\(server.log)")
        #expect(ours.stdout == theirs.stdout, "ours:\n\(ours.stdout)\nnbdinfo:\n\(theirs.stdout)")
        #expect(ours.stdout.contains("dirty"))
        // Asking for a context the export lacks is a clear error, not an empty map.
        let missing = try P.swiftnbd(["info", "--map", "--map-context", "qemu:dirty-bitmap:nope", uri])
        #expect(!missing.succeeded)
        #expect(missing.stderr.contains("qemu:dirty-bitmap:nope"), "\(missing)")
    }

    @Test("multi-connection copy into qemu-nbd lands byte for byte",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img")), arguments: QEMUGeneration.all)
    func multiConnCopyInto(qemu: QEMUGeneration) throws {
        let dir = TempDir("client-multi")
        let source = dir.file("src.raw"), target = dir.file("dst.raw")
        try makePatternFile(source, size: 24 << 20, seed: 3)
        #expect(try run([qemu.img, "create", "-q", "-f", "raw", target, "24M"]).succeeded)
        let (server, uri) = try P.qemuNBD(["-f", "raw", "--cache=writeback", target], in: dir, qemu: qemu)
        defer { server.stop() }
        let copy = try P.swiftnbd(["copy", "--connections", "4", "--requests", "8", "--request-size", "262144", "--flush", "--verify", source, uri])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        server.stop()
        #expect(filesEqual(source, target))
    }

    @Test("qemu-storage-daemon exports are listed, described and written through",
          .enabled(if: Peers.available("qemu-storage-daemon", "qemu-img", "nbdinfo")), arguments: QEMUGeneration.all)
    func storageDaemon(qemu: QEMUGeneration) throws {
        let dir = TempDir("client-qsd")
        let image = dir.file("disk.qcow2"), source = dir.file("src.raw")
        try makePatternFile(source, size: 8 << 20, seed: 9)
        #expect(try run([qemu.img, "create", "-q", "-f", "qcow2", image, "8M"]).succeeded)
        let (server, uri) = try P.storageDaemon(image: image, format: "qcow2", in: dir, export: "vm1", description: "first-disk", qemu: qemu)
        defer { server.stop() }

        let info = try P.swiftnbd(["info", "--json", uri])
        #expect(info.succeeded, "\(info)\n\(server.log)")
        #expect(info.stdout.contains("\"export-size\": 8388608"), "\(info.stdout)")
        #expect(info.stdout.contains("\"description\": \"first-disk\""), "\(info.stdout)")
        let list = try P.swiftnbd(["info", "--list", uri])
        #expect(list.succeeded, "\(list)")
        #expect(list.stdout.contains("export=\"vm1\""), "\(list.stdout)")
        #expect(list.stdout.contains("first-disk"), "\(list.stdout)")
        let theirs = try run(["nbdinfo", "--list", "--json", uri])
        #expect(theirs.stdout.contains("\"vm1\""))

        let copy = try P.swiftnbd(["copy", "--flush", source, uri])
        #expect(copy.succeeded, "\(copy)\n\(server.log)")
        let back = dir.file("back.raw")
        let readBack = try P.swiftnbd(["copy", uri, back])
        #expect(readBack.succeeded, "\(readBack)")
        #expect(filesEqual(source, back))
        server.stop()
        let reference = dir.file("ref.raw")
        #expect(try run([qemu.img, "convert", "-U", "-O", "raw", image, reference]).succeeded)
        #expect(filesEqual(source, reference))
    }

    @Test("an unknown export name fails with the export's name in the message",
          .enabled(if: Peers.available("qemu-nbd")))
    func unknownExport() throws {
        let dir = TempDir("client-unknown")
        let image = dir.file("disk.raw")
        try makePatternFile(image, size: 1 << 20)
        let (server, uri) = try P.qemuNBD(["-f", "raw", image], in: dir)
        defer { server.stop() }
        let wrong = uri.replacingOccurrences(of: "/disk?", with: "/nope?")
        let result = try P.swiftnbd(["info", wrong])
        #expect(!result.succeeded)
        #expect(result.stderr.contains("'nope'"), "\(result)")
        let copy = try P.swiftnbd(["copy", wrong, dir.file("x.raw")])
        #expect(!copy.succeeded)
    }

    @Test("TCP over IPv4 and IPv6 literals reaches qemu-nbd", .enabled(if: Peers.available("qemu-nbd")))
    func tcpIPv4AndIPv6() throws {
        let dir = TempDir("client-tcp")
        let image = dir.file("disk.raw")
        try makePatternFile(image, size: 2 << 20)
        for host in ["127.0.0.1", "::1"] {
            let port = FreePort.next()
            let listener: Listener = .tcp(host: host, port: port)
            guard let server = try? withUnblockedSignals({
                try ServerProcess(["qemu-nbd", "-t", "-b", host, "-p", "\(port)", "-x", "disk", "-f", "raw", image], listener: listener)
            }) else {
                // A host without IPv6 loopback cannot run the second half; IPv4 must always work.
                #expect(host == "::1", "qemu-nbd did not start on \(host)")
                continue
            }
            defer { server.stop() }
            let literal = host.contains(":") ? "[\(host)]" : host
            let result = try P.swiftnbd(["info", "--json", "nbd://\(literal):\(port)/disk"])
            #expect(result.succeeded, "\(result)\n\(server.log)")
            #expect(result.stdout.contains("\"export-size\": 2097152"))
        }
    }

    @Test("copy into an existing qcow2 image writes guest data that qemu-img compares equal and checks clean",
          .enabled(if: Peers.available("qemu-img")))
    func copyIntoQcow2() throws {
        let dir = TempDir("client-into-qcow2")
        let source = dir.file("src.raw"), image = dir.file("dst.qcow2")
        try makePatternFile(source, size: 8 << 20, seed: 17)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
        try handle.truncate(atOffset: 12 << 20) // a zero tail the copy must not allocate
        try handle.close()
        #expect(try run(["qemu-img", "create", "-q", "-f", "qcow2", image, "12M"]).succeeded)
        let copy = try P.swiftnbd(["copy", "--flush", source, image])
        #expect(copy.succeeded, "\(copy)")
        let compare = try run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", source, image])
        #expect(compare.succeeded, "\(compare)")
        let check = try run(["qemu-img", "check", image])
        #expect(check.succeeded, "\(check)")
    }

    @Test("copy creates a new qcow2 image from an NBD export or a raw file; qemu-img compares it equal and checks it clean",
          .enabled(if: Peers.available("qemu-nbd", "qemu-img", "qemu-io")), arguments: QEMUGeneration.all)
    func copyCreatesQcow2(qemu: QEMUGeneration) throws {
        let dir = TempDir("client-new-qcow2")
        let source = dir.file("src.raw")
        try makePatternFile(source, size: 6 << 20, seed: 29)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: source))
        try handle.truncate(atOffset: 20 << 20) // a zero tail that must stay unallocated
        try handle.close()
        let (server, uri) = try P.qemuNBD(["-f", "raw", "-r", source], in: dir, qemu: qemu)
        defer { server.stop() }

        // By extension, from an NBD export.
        let byName = dir.file("by-name.qcow2")
        let fromNBD = try P.swiftnbd(["copy", "--flush", uri, byName])
        #expect(fromNBD.succeeded, "\(fromNBD)\n\(server.log)")
        // By --output-format, from a local file, over an existing raw file it replaces.
        let byFlag = dir.file("by-flag.img")
        try makePatternFile(byFlag, size: 1 << 20, seed: 3)
        let fromFile = try P.swiftnbd(["copy", "--output-format", "qcow2", source, byFlag])
        #expect(fromFile.succeeded, "\(fromFile)")

        for image in [byName, byFlag] {
            let info = try run([qemu.img, "info", "-U", "--output=json", image])
            #expect(info.stdout.contains("\"format\": \"qcow2\""), "\(info)")
            let compare = try run([qemu.img, "compare", "-U", "-f", "raw", "-F", "qcow2", source, image])
            #expect(compare.succeeded, "\(compare)")
            let check = try run([qemu.img, "check", "-U", image])
            #expect(check.succeeded, "\(check)")
            // Only the data was allocated: the 14 MiB zero tail stays out of the image.
            let bytes = (try FileManager.default.attributesOfItem(atPath: image)[.size] as? NSNumber)?.intValue ?? 0
            #expect(bytes < 8 << 20, "\(image) is \(bytes) bytes for 6 MiB of data")
        }

        // A destination another process is writing is refused, not truncated.
        let busy = dir.file("busy.qcow2")
        #expect(try run([qemu.img, "create", "-q", "-f", "raw", busy, "20M"]).succeeded)
        let (holder, _) = try P.qemuNBD(["-f", "raw", busy], in: dir, export: "busy", qemu: qemu)
        defer { holder.stop() }
        let refused = try P.swiftnbd(["copy", "--output-format", "qcow2", source, busy])
        #expect(!refused.succeeded && refused.stderr.contains("lock"), "\(refused)")
        let size = (try FileManager.default.attributesOfItem(atPath: busy)[.size] as? NSNumber)?.intValue
        #expect(size == 20 << 20)
    }
}
