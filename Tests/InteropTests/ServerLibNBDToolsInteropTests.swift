import Foundation
import Testing

/// `swiftnbd serve` against libnbd's tools (nbdinfo, nbdcopy, nbdsh) and fio's nbd engine.
@Suite("Server ↔ nbdinfo/nbdcopy/nbdsh/fio", .serialized, .noLeftoverProcesses)
struct ServerLibNBDToolsInteropTests {
    @Test("nbdinfo --json reports the size and the flags derived from the device",
          .enabled(if: Peers.available("nbdinfo")))
    func nbdinfoJSON() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 48 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img"), "--name", "disk", "--description", "Test disk"])
        defer { server.stop() }
        let result = try runExpectingSuccess(["nbdinfo", "--json", server.uri("disk")], server: server)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        let export = (json?["exports"] as? [[String: Any]])?.first ?? [:]
        #expect(json?["protocol"] as? String == "newstyle-fixed")
        #expect(json?["structured"] as? Bool == true)
        #expect(export["export-size"] as? Int == 48 << 20, "\(result)")
        #expect(export["description"] as? String == "Test disk")
        #expect(export["is_read_only"] as? Bool == false)
        for flag in ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_multi_conn", "can_cache", "can_df"] {
            #expect(export[flag] as? Bool == true, "\(flag) in \(result.stdout)")
        }
        #expect((export["contexts"] as? [String])?.contains("base:allocation") == true)

        let readOnly = try SwiftNBDServe([dir.file("disk.img"), "--read-only", "--max-connections", "1"])
        defer { readOnly.stop() }
        let roResult = try runExpectingSuccess(["nbdinfo", "--json", readOnly.uri()], server: readOnly)
        let roExport = ((try JSONSerialization.jsonObject(with: Data(roResult.stdout.utf8)) as? [String: Any])?["exports"] as? [[String: Any]])?.first ?? [:]
        #expect(roExport["is_read_only"] as? Bool == true)
        #expect(roExport["can_trim"] as? Bool == false)
        // One connection allowed: multi-conn would be a lie.
        #expect(roExport["can_multi_conn"] as? Bool == false)
    }

    @Test("nbdinfo --list shows two exports with their descriptions",
          .enabled(if: Peers.available("nbdinfo")))
    func nbdinfoList() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("a.img"), size: 1 << 20)
        try makeSparseFile(dir.file("b.img"), size: 2 << 20)
        let server = try SwiftNBDServe(["--export", "system=\(dir.file("a.img")),desc=System disk, first",
                                        "--export", "data=\(dir.file("b.img")),ro,desc=Data"])
        defer { server.stop() }
        let result = try runExpectingSuccess(["nbdinfo", "--list", "--json", server.uri()], server: server)
        let exports = ((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])?["exports"] as? [[String: Any]]) ?? []
        #expect(exports.map { $0["export-name"] as? String ?? "?" } == ["system", "data"], "\(result)")
        #expect(exports.map { $0["description"] as? String ?? "?" } == ["System disk, first", "Data"])
        #expect(exports.map { $0["export-size"] as? Int ?? -1 } == [1 << 20, 2 << 20])
        #expect(exports.map { $0["is_read_only"] as? Bool ?? false } == [false, true])
    }

    @Test("nbdinfo --map shows the holes of a sparse image",
          .enabled(if: Peers.available("nbdinfo", "qemu-io")))
    func nbdinfoMap() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("sparse.img"), size: 16 << 20)
        try runExpectingSuccess(["qemu-io", "-f", "raw", dir.file("sparse.img"), "-c", "write -P 1 4M 1M"], server: nil)
        let server = try SwiftNBDServe([dir.file("sparse.img"), "--read-only"])
        defer { server.stop() }
        let result = try runExpectingSuccess(["nbdinfo", "--map", server.uri()], server: server)
        let rows = result.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        let summary = rows.map { "\($0[0]) \($0[1]) \($0[2])" }
        #expect(summary == ["0 \(4 << 20) 3", "\(4 << 20) \(1 << 20) 0", "\(5 << 20) \(11 << 20) 3"], "\(result)")
    }

    @Test("nbdcopy copies out of and into an export byte for byte",
          .enabled(if: Peers.available("nbdcopy")))
    func nbdcopyBothWays() throws {
        let dir = TempDir()
        try makePatternFile(dir.file("source.img"), size: 24 << 20, seed: 5)
        try makeSparseFile(dir.file("target.img"), size: 24 << 20)
        let server = try SwiftNBDServe(["--export", "src=\(dir.file("source.img")),ro", "--export", "dst=\(dir.file("target.img"))"])
        try runExpectingSuccess(["nbdcopy", server.uri("src"), dir.file("out.img")], server: server)
        #expect(filesEqual(dir.file("source.img"), dir.file("out.img")))
        try runExpectingSuccess(["nbdcopy", "--connections=4", dir.file("source.img"), server.uri("dst")], server: server)
        #expect(server.stop() == 0)
        #expect(filesEqual(dir.file("source.img"), dir.file("target.img")))
    }

    @Test("nbdsh: structured reads return holes, 64 requests fly at once, and a second connection sees flushed writes",
          .enabled(if: Peers.available("nbdsh")))
    func nbdshScripts() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 16 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img")])
        defer { server.stop() }
        let script = """
        import nbd
        uri = "\(server.uri())"
        h = nbd.NBD()
        h.connect_uri(uri)
        h.pwrite(b"\\xab" * 65536, 1 << 20)
        kinds = []
        def chunk(subbuf, offset, status, error):
            kinds.append((status, offset, len(subbuf)))
            return 0
        buf = h.pread_structured(4 << 20, 0, chunk)
        assert buf[1 << 20:(1 << 20) + 65536] == b"\\xab" * 65536
        assert buf[:1 << 20] == bytes(1 << 20)
        holes = [k for k in kinds if k[0] == nbd.READ_HOLE]
        data = [k for k in kinds if k[0] == nbd.READ_DATA]
        assert len(holes) == 2 and len(data) == 1, kinds
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray([i]) * 4096), (2 << 20) + i * 4096) for i in range(64)]
        peak = h.aio_in_flight()
        for _ in range(100000):
            if h.aio_in_flight() == 0:
                break
            h.poll(-1)
        assert all(h.aio_command_completed(c) for c in cookies)
        assert h.can_multi_conn()
        h2 = nbd.NBD()
        h2.connect_uri(uri)
        h.pwrite(b"\\x77" * 4096, 8 << 20)
        h.flush()
        assert h2.pread(4096, 8 << 20) == b"\\x77" * 4096
        for i in range(64):
            assert h2.pread(4096, (2 << 20) + i * 4096) == bytes([i]) * 4096
        h2.shutdown()
        h.shutdown()
        print("peak-in-flight", peak)
        """
        let scriptPath = dir.file("check.py")
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let result = try runExpectingSuccess(["nbdsh", "-c", "exec(open('\(scriptPath)').read())"], server: server,
                                             environment: nbdshEnvironment)
        let peak = result.stdout.split(separator: " ").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        #expect(peak > 1, "requests were not pipelined: \(result)")
    }

    @Test("fio's nbd engine runs a verified random read/write workload",
          .enabled(if: Peers.available("fio")))
    func fioVerify() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 64 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img")])
        defer { server.stop() }
        let result = try runExpectingSuccess(["fio", "--name=swiftnbd", "--ioengine=nbd", "--uri=\(server.uri())",
                                              "--rw=randrw", "--bs=4k", "--size=32M", "--iodepth=16",
                                              "--verify=crc32c", "--verify_state_save=0", "--runtime=60", "--output-format=json"],
                                             server: server, timeout: 180)
        let text = result.stdout
        let json = text.firstIndex(of: "{").map { String(text[$0...]) } ?? ""
        let job = ((try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])?["jobs"] as? [[String: Any]])?.first ?? [:]
        #expect(job["error"] as? Int == 0, "\(result)")
        let written = (job["write"] as? [String: Any])?["io_bytes"] as? Int ?? 0
        let read = (job["read"] as? [String: Any])?["io_bytes"] as? Int ?? 0
        #expect(written > 0 && read > 0, "\(result)")
    }
}
