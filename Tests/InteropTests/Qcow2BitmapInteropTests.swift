import BlockDevices
import Foundation
import NBDClient
import NBDProtocol
import Qcow2
import Testing
import TestSupport

/// Persistent dirty bitmaps (qcow2.txt "Bitmaps") written by our driver and read by QEMU, and
/// `swiftnbd serve --bitmap` against `qemu-nbd -B`. Bitmaps are made with `qemu-img bitmap`;
/// every oracle is a QEMU tool: `qemu-img check`/`info` of both generations, and QEMU's own
/// export of the bitmap (`qemu-nbd -r -B NAME`, read with nbdinfo or our client).
@Suite("qcow2 persistent dirty bitmaps versus QEMU", .serialized, .noLeftoverProcesses)
struct Qcow2BitmapInteropTests {
    static let cluster: UInt64 = 65536

    /// A 32 MiB image with three bitmaps: b0 (64 KiB, enabled), b1 (512 B, enabled), b2
    /// (64 KiB, disabled after QEMU dirtied it). QEMU writes some data first, so every bitmap
    /// starts with bits set and the driver must load them.
    static func makeImage(_ dir: TempDir, size: UInt64 = 32 << 20) throws -> String {
        let path = dir.file("disk.qcow2")
        for command in [["qemu-img", "create", "-q", "-f", "qcow2", path, "\(size)"],
                        ["qemu-img", "bitmap", "--add", path, "b0"],
                        ["qemu-img", "bitmap", "--add", "--granularity", "512", path, "b1"],
                        ["qemu-img", "bitmap", "--add", path, "b2"],
                        ["qemu-io", "-f", "qcow2", "-c", "write -P 7 0 100k", "-c", "write -P 8 5M 4k", "-c", "write -P 9 777k 1",
                         path],
                        ["qemu-img", "bitmap", "--disable", path, "b2"]] {
            let result = try run(command)
            guard result.succeeded else { throw FixtureFailure("\(command.joined(separator: " ")): \(result)") }
        }
        return path
    }

    /// The bitmaps `qemu-img info` reports: name, granularity and flags of each.
    static func bitmapsInfo(_ image: String) throws -> [String] {
        let out = try run(["qemu-img", "info", "--output=json", image])
        guard let json = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any],
              let specific = json["format-specific"] as? [String: Any], let data = specific["data"] as? [String: Any],
              let bitmaps = data["bitmaps"] as? [[String: Any]] else { throw FixtureFailure("no bitmaps in \(out)") }
        return bitmaps.map { b in
            "\(b["name"] ?? "?") \(b["granularity"] ?? "?") \((b["flags"] as? [String] ?? []).joined(separator: ","))"
        }
    }

    /// A bitmap as QEMU exports it (nbdinfo --map through `qemu-nbd -r -B NAME`).
    static func qemuMap(_ path: String, _ name: String, qemu: QEMUGeneration = .debian) throws -> [(UInt64, UInt32)] {
        try nbdinfoMap(context: "qemu:dirty-bitmap:\(name)", server: [qemu.nbd, "-r", "-f", "qcow2", "-B", name, path])
    }

    /// Granule-per-bool form of merged runs.
    static func granules(_ runs: [(UInt64, UInt32)], granularity: UInt64, size: UInt64) -> [Bool] {
        var bits = [Bool](repeating: false, count: Int((size + granularity - 1) / granularity))
        var offset: UInt64 = 0
        for (length, value) in runs {
            if value & 1 == 1 { for g in Int(offset / granularity)..<Int((offset + length - 1) / granularity + 1) { bits[g] = true } }
            offset += length
        }
        return bits
    }

    /// Merged runs of a granule model over the whole disk, as nbdinfo shows them.
    static func runs(_ bits: [Bool], granularity: UInt64, size: UInt64) -> [(UInt64, UInt32)] {
        var result: [(UInt64, UInt32)] = []
        for (g, dirty) in bits.enumerated() {
            let length = min(granularity, size - UInt64(g) * granularity)
            let value: UInt32 = dirty ? 1 : 0
            if let last = result.last, last.1 == value { result[result.count - 1].0 += length } else { result.append((length, value)) }
        }
        return result
    }

    /// What the driver's bitmaps must record: each enabled bitmap as a granule model, plus the
    /// state of every cluster so a TRIM's effect (changes content or not) is known.
    struct Model {
        enum Cluster { case zero, zeroWithHost, data }
        let size: UInt64
        var bitmaps: [String: (granularity: UInt64, bits: [Bool], enabled: Bool)]
        var clusters: [Cluster]

        mutating func mark(_ offset: UInt64, _ length: UInt64) {
            for (name, b) in bitmaps where b.enabled {
                var bits = b.bits
                for g in Int(offset / b.granularity)...Int((offset + length - 1) / b.granularity) { bits[g] = true }
                bitmaps[name]?.bits = bits
            }
        }

        /// Cluster pieces of a range: (offset, length, covers the whole cluster).
        func pieces(_ offset: UInt64, _ length: UInt64) -> [(UInt64, UInt64, Bool)] {
            var result: [(UInt64, UInt64, Bool)] = []
            var cursor = offset
            while cursor < offset + length {
                let start = cursor / cluster * cluster
                let end = min(start + cluster, size)
                let n = min(end, offset + length) - cursor
                result.append((cursor, n, cursor == start && cursor + n == end))
                cursor += n
            }
            return result
        }

        mutating func write(_ offset: UInt64, _ length: UInt64) {
            mark(offset, length)
            for (o, _, _) in pieces(offset, length) { clusters[Int(o / cluster)] = .data }
        }

        mutating func zero(_ offset: UInt64, _ length: UInt64, mayTrim: Bool) {
            mark(offset, length)
            for (o, _, whole) in pieces(offset, length) {
                let c = Int(o / cluster)
                if !whole { clusters[c] = .data } else if mayTrim { clusters[c] = .zero } else if clusters[c] == .data { clusters[c] = .zeroWithHost }
            }
        }

        mutating func trim(_ offset: UInt64, _ length: UInt64) {
            for (o, n, whole) in pieces(offset, length) where whole && clusters[Int(o / cluster)] != .zero {
                mark(o, n)
                clusters[Int(o / cluster)] = .zero
            }
        }
    }

    @Test("random WRITE/WRITE_ZEROES/TRIM: QEMU reads exactly the model's bits, check is clean, no bitmap left in use",
          .enabled(if: Peers.available("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo")), arguments: QEMUGeneration.all)
    func randomWorkloadMatchesModel(qemu: QEMUGeneration) throws {
        let dir = TempDir("bitmap-model")
        let size: UInt64 = 32 << 20
        let path = try Self.makeImage(dir, size: size)
        var model = Model(size: size, bitmaps: [:], clusters: [Model.Cluster](repeating: .zero, count: Int(size / Self.cluster)))
        for c in [0, 1, 80, 12] { model.clusters[c] = .data }  // what qemu-io wrote (777k is in cluster 12)
        for (name, granularity, enabled) in [("b0", UInt64(65536), true), ("b1", UInt64(512), true), ("b2", UInt64(65536), false)] {
            let bits = Self.granules(try Self.qemuMap(path, name), granularity: granularity, size: size)
            #expect(bits.contains(true), "\(name) starts dirty")
            model.bitmaps[name] = (granularity, bits, enabled)
        }

        let seed = UInt64(ProcessInfo.processInfo.environment["BITMAP_SEED"] ?? "") ?? 1012
        var rng = SplitMix64(seed: seed)
        let image = try Qcow2Image(path: path)
        // Open for writing: every bitmap is in use on disk, as QEMU marks them.
        let whileOpen = try run([qemu.img, "info", "-U", "--output=json", path])
        #expect(whileOpen.stdout.components(separatedBy: "\"in-use\"").count - 1 == 3, "\(whileOpen)")
        let payload = [UInt8](repeating: 0x5A, count: 300 << 10)
        for step in 0..<240 {
            let aligned = rng.next() % 2 == 0
            var offset = rng.next() % size
            var length = 1 + rng.next() % min(size - offset, 300 << 10)
            if aligned {
                offset = offset / Self.cluster * Self.cluster
                length = min(size - offset, max(1, length / Self.cluster) * Self.cluster)
            }
            switch rng.next() % 4 {
            case 0, 1:
                try payload.withUnsafeBytes { try image.write(UnsafeRawBufferPointer(rebasing: $0[0..<Int(length)]), at: offset, fua: false) }
                model.write(offset, length)
            case 2:
                let mayTrim = rng.next() % 2 == 0
                try image.writeZeroes(offset: offset, length: length, mayTrim: mayTrim, fastOnly: false, fua: false)
                model.zero(offset, length, mayTrim: mayTrim)
            default:
                try image.trim(offset: offset, length: length, fua: false)
                model.trim(offset, length)
            }
            if step % 60 == 59 {
                try image.flush()
                // After a flush the file is complete: every bitmap cluster counted, no leak
                // (checked on a copy: the open image is locked). The bitmaps stay in use.
                if step == 119 {
                    let copy = dir.file("flushed.qcow2")
                    try FileManager.default.copyItem(atPath: path, toPath: copy)
                    let check = try run([qemu.img, "check", copy])
                    #expect(check.succeeded && check.stdout.contains("No errors were found"), "after flush: \(check)")
                    #expect(try Self.bitmapsInfo(copy).allSatisfy { $0.contains("in-use") })
                }
            }
        }
        // The live view (what serve --bitmap answers on a writable export) matches already.
        for (name, b) in model.bitmaps {
            let live = try image.dirtyRuns(bitmap: name, offset: 0, length: size).map { ($0.length, UInt32($0.dirty ? 1 : 0)) }
            #expect(describe(live) == describe(Self.runs(b.bits, granularity: b.granularity, size: size)), "live \(name), seed \(seed)")
        }
        try image.close()

        let check = try qemuImgEveryGeneration(["check", path])
        #expect(check.succeeded && check.stdout.contains("No errors were found"), "\(check)")
        let info = try qemuImgEveryGeneration(["info", "--output=json", path])
        #expect(info.succeeded && !info.stdout.contains("in-use"), "\(info)")
        #expect(info.stdout.components(separatedBy: "\"auto\"").count - 1 == 2, "b0 and b1 stay enabled, b2 disabled: \(info)")
        for (name, b) in model.bitmaps.sorted(by: { $0.key < $1.key }) {
            let fromQEMU = try Self.qemuMap(path, name, qemu: qemu)
            #expect(describe(fromQEMU) == describe(Self.runs(b.bits, granularity: b.granularity, size: size)),
                    "\(name) as \(qemu.testDescription) exports it, seed \(seed)")
        }
    }

    /// Extents per context name for one BLOCK_STATUS request.
    static func status(_ uri: String, extended: Bool, offset: UInt64, length: UInt64, requestOne: Bool) async throws -> [String: [BlockStatusExtent]] {
        let connection = try await NBDConnection.connect(try NBDURI(uri)) { config in
            config.metaContexts = ["qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1"]
            config.requestExtendedHeaders = extended
        }
        let reply = try await connection.blockStatus(at: offset, length: length, requestOne: requestOne)
        var result: [String: [BlockStatusExtent]] = [:]
        for name in ["qemu:dirty-bitmap:b0", "qemu:dirty-bitmap:b1"] {
            if let id = connection.export.metaContextID(name) { result[name] = reply.extentsByContext[id] }
        }
        await connection.disconnect()
        return result
    }

    @Test("serve --bitmap answers LIST, SET and BLOCK_STATUS exactly as qemu-nbd -B (REQ_ONE, unaligned, compact or extended)",
          .enabled(if: Peers.available("qemu-img", "qemu-io", "qemu-nbd", "nbdinfo")), arguments: QEMUGeneration.all)
    func blockStatusMatchesQemuNbd(qemu: QEMUGeneration) async throws {
        let dir = TempDir("bitmap-serve")
        let path = try Self.makeImage(dir)
        // Many small extents in b1 (512 B granularity) and long ones in b0.
        var script: [String] = []
        for k in 0..<40 { script += ["-c", "write -P 1 \(k * 37 * 1024 + k * 512) \(512 * (k % 3 + 1))"] }
        script += ["-c", "write -z 20M 3M"]
        let written = try run(["qemu-io", "-f", "qcow2"] + script + [path])
        #expect(written.succeeded, "\(written)")

        // nbdinfo's view of each context, byte for byte.
        for name in ["b0", "b1"] {
            let ours = try run(["nbdinfo", "--map=qemu:dirty-bitmap:\(name)", "--", "[", Peers.swiftnbd, "serve", "-f", "qcow2", "-r",
                                "-B", "b0", "--bitmap", "b1", path, "]"], timeout: 60)
            let theirs = try run(["nbdinfo", "--map=qemu:dirty-bitmap:\(name)", "--", "[", qemu.nbd, "-r", "-f", "qcow2",
                                  "-B", "b0", "-B", "b1", path, "]"], timeout: 60)
            #expect(ours.succeeded && theirs.succeeded && !ours.stdout.isEmpty, "\(ours)\n\(theirs)")
            // Only the map lines: under socket activation a server's own stdout lands there too.
            func mapLines(_ text: String) -> [Substring] { text.split(separator: "\n").filter { $0.first?.isWhitespace == true || $0.first?.isNumber == true } }
            #expect(!mapLines(ours.stdout).isEmpty && mapLines(ours.stdout) == mapLines(theirs.stdout), "\(name) via nbdinfo")
        }
        let list = try run(["nbdinfo", "--list", "--content", "--", "[", Peers.swiftnbd, "serve", "-f", "qcow2", "-r",
                            "-B", "b0", "-B", "b1", path, "]"], timeout: 60)
        #expect(list.stdout.contains("qemu:dirty-bitmap:b0") && list.stdout.contains("qemu:dirty-bitmap:b1"), "\(list)")

        // Our client against both servers, raw extents per context.
        let ours = try ServerProcess([Peers.swiftnbd, "serve", "-f", "qcow2", "-r", "-B", "b0", "-B", "b1", "--unix", dir.file("s.sock"), path],
                                     listener: .unix(path: dir.file("s.sock")))
        defer { ours.stop() }
        let (theirs, theirURI) = try ClientInteropPeers.qemuNBD(["-r", "-f", "qcow2", "-B", "b0", "-B", "b1", path], in: dir, export: "",
                                                                qemu: qemu)
        defer { theirs.stop() }
        let ourURI = "nbd+unix:///?socket=\(dir.file("s.sock"))"
        let windows: [(UInt64, UInt64)] = [(0, 32 << 20), (1000, 3 << 20), (100 * 1024 + 7, 65536), (20 << 20, 4 << 20), (31 << 20, 1 << 20),
                                           (512 * 3, 1)]
        for (offset, length) in windows {
            for requestOne in [false, true] {
                let a = try await Self.status(ourURI, extended: qemu.speaksExtendedHeaders, offset: offset, length: length, requestOne: requestOne)
                let b = try await Self.status(theirURI, extended: qemu.speaksExtendedHeaders, offset: offset, length: length, requestOne: requestOne)
                #expect(a.count == 2 && a == b, "\(offset)+\(length) REQ_ONE=\(requestOne)")
            }
        }
    }

    @Test("more than 131,072 extents in one request: both servers stop after the same extent",
          .enabled(if: Peers.available("qemu-img", "qemu-nbd")), arguments: QEMUGeneration.all)
    func extentCap(qemu: QEMUGeneration) async throws {
        let dir = TempDir("bitmap-cap")
        let path = dir.file("cap.qcow2")
        for command in [["qemu-img", "create", "-q", "-f", "qcow2", path, "192M"],
                        ["qemu-img", "bitmap", "--add", "--granularity", "512", path, "b1"],
                        ["qemu-img", "bitmap", "--add", path, "b0"]] {
            let result = try run(command)
            #expect(result.succeeded, "\(result)")
        }
        // Every other 512-byte granule dirty over 150 MiB: 307,200 extents in b1.
        let image = try Qcow2Image(path: path)
        let sector = [UInt8](repeating: 1, count: 512)
        try sector.withUnsafeBytes { bytes in
            for k in 0..<UInt64(153_600) { try image.write(bytes, at: k * 1024, fua: false) }
        }
        try image.close()
        let socket = dir.file("s.sock")
        let ours = try ServerProcess([Peers.swiftnbd, "serve", "-f", "qcow2", "-r", "-B", "b0", "-B", "b1", "--unix", socket, path],
                                     listener: .unix(path: socket))
        defer { ours.stop() }
        let (theirs, theirURI) = try ClientInteropPeers.qemuNBD(["-r", "-f", "qcow2", "-B", "b0", "-B", "b1", path], in: dir, export: "",
                                                                qemu: qemu)
        defer { theirs.stop() }
        let a = try await Self.status("nbd+unix:///?socket=\(socket)", extended: qemu.speaksExtendedHeaders, offset: 1000,
                                      length: 180 << 20, requestOne: false)
        let b = try await Self.status(theirURI, extended: qemu.speaksExtendedHeaders, offset: 1000, length: 180 << 20, requestOne: false)
        #expect(a["qemu:dirty-bitmap:b1"]?.count == 131_072)
        #expect(a == b)
    }

    @Test("a crash leaves every bitmap in use, as QEMU would; then both servers refuse to export it",
          .enabled(if: Peers.available("qemu-img", "qemu-io", "qemu-nbd")))
    func crashLeavesBitmapsInUse() throws {
        let dir = TempDir("bitmap-crash")
        let path = try Self.makeImage(dir)
        let socket = dir.file("s.sock")
        let server = try ServerProcess([Peers.swiftnbd, "serve", "-f", "qcow2", "--unix", socket, path], listener: .unix(path: socket))
        let io = try run(["qemu-io", "-f", "raw", "-c", "write -P 3 1M 64k", "-c", "flush", "nbd+unix:///?socket=\(socket)"])
        #expect(io.succeeded, "\(io)")
        kill(server.pid, SIGKILL)
        _ = server.stop()
        let info = try qemuImgEveryGeneration(["info", "--output=json", path])
        #expect(info.stdout.components(separatedBy: "\"in-use\"").count - 1 == 3, "\(info)")
        // The same crash under qemu-nbd leaves the same flags on a copy of the same image.
        let referenceDir = TempDir("bitmap-crash-qemu")
        let reference = try Self.makeImage(referenceDir)
        let qsock = dir.file("qc.sock")
        let qemuServer = try withUnblockedSignals {
            try ServerProcess(["qemu-nbd", "-t", "-f", "qcow2", "-k", qsock, reference], listener: .unix(path: qsock))
        }
        let qio = try run(["qemu-io", "-f", "raw", "-c", "write -P 3 1M 64k", "-c", "flush", "nbd+unix:///?socket=\(qsock)"])
        #expect(qio.succeeded, "\(qio)")
        kill(qemuServer.pid, SIGKILL)
        _ = qemuServer.stop()
        #expect(try Self.bitmapsInfo(path) == Self.bitmapsInfo(reference))
        #expect(try Self.bitmapsInfo(path).count == 3)

        let ours = try ClientInteropPeers.swiftnbd(["serve", "-f", "qcow2", "-r", "-B", "b0", "--unix", dir.file("x.sock"), path], timeout: 30)
        #expect(ours.status == 1 && ours.stderr.contains("bitmap 'b0'") && ours.stderr.contains("inconsistent"), "\(ours)")
        let theirs = try run(["qemu-nbd", "-r", "-f", "qcow2", "-B", "b0", "-k", dir.file("q.sock"), path], timeout: 30)
        #expect(!theirs.succeeded && theirs.stderr.contains("inconsistent"), "\(theirs)")

        // Writable again: the inconsistent bitmaps are left exactly as they are.
        let image = try Qcow2Image(path: path)
        try [UInt8](repeating: 1, count: 4096).withUnsafeBytes { try image.write($0, at: 0, fua: false) }
        try image.close()
        let after = try qemuImgEveryGeneration(["info", "--output=json", path])
        #expect(after.stdout.components(separatedBy: "\"in-use\"").count - 1 == 3, "\(after)")
        let check = try qemuImgEveryGeneration(["check", path])
        #expect(check.succeeded, "\(check)")
    }

    @Test("a 4 TiB sparse image: a few writes cost a few chunks of memory, and QEMU reads exactly those bits",
          .enabled(if: Peers.available("qemu-img", "qemu-nbd", "nbdinfo")))
    func multiTiB() throws {
        let dir = TempDir("bitmap-4t")
        let path = dir.file("big.qcow2")
        let size: UInt64 = 4 << 40
        for command in [["qemu-img", "create", "-q", "-f", "qcow2", path, "4T"], ["qemu-img", "bitmap", "--add", path, "b0"]] {
            let result = try run(command)
            #expect(result.succeeded, "\(result)")
        }
        let image = try Qcow2Image(path: path)
        let data = [UInt8](repeating: 0xEE, count: 4096)
        let offsets: [UInt64] = [0, (1 << 40) + 12345, size - 4096]
        for offset in offsets {
            try data.withUnsafeBytes { try image.write($0, at: offset, fua: false) }
        }
        let memory = try #require(image.bitmapMemoryBytes("b0"))
        #expect(memory <= 3 * 65536 + 128 * 16, "\(memory) bytes for a 4 TiB bitmap with three dirty chunks")
        try image.close()
        let check = try run(["qemu-img", "check", path])
        #expect(check.succeeded, "\(check)")
        let map = try Self.qemuMap(path, "b0")
        let expected: [(UInt64, UInt32)] = [(65536, 1), ((1 << 40) - 65536, 0), (65536, 1), (size - (1 << 40) - 2 * 65536, 0), (65536, 1)]
        #expect(describe(map) == describe(expected))
    }

    @Test("serve --bitmap refusals name the bitmap and the reason; an enabled bitmap on a writable export is served live with a notice",
          .enabled(if: Peers.available("qemu-img", "qemu-io")))
    func refusalsAndNotice() throws {
        let dir = TempDir("bitmap-cli")
        let path = try Self.makeImage(dir)
        let sock = dir.file("s.sock")
        let unknown = try ClientInteropPeers.swiftnbd(["serve", "-f", "qcow2", "-r", "-B", "nope", "--unix", sock, path], timeout: 30)
        #expect(unknown.status == 1 && unknown.stderr.contains("bitmap 'nope' not found") && unknown.stderr.contains("'b0', 'b1', 'b2'"), "\(unknown)")
        let raw = try ClientInteropPeers.swiftnbd(["serve", "-f", "raw", "-r", "-B", "b0", "--unix", sock, path], timeout: 30)
        #expect(raw.status == 1 && raw.stderr.contains("needs a qcow2 image"), "\(raw)")
        let snapshot = try ClientInteropPeers.swiftnbd(["serve", "-f", "qcow2", "-s", "-B", "b0", "--unix", sock, path], timeout: 30)
        #expect(snapshot.status == 1 && snapshot.stderr.contains("--snapshot"), "\(snapshot)")
        let twice = try ClientInteropPeers.swiftnbd(["serve", "-f", "qcow2", "-r", "-B", "b0", "-B", "b0", "--unix", sock, path], timeout: 30)
        #expect(twice.status == 1 && twice.stderr.contains("given twice"), "\(twice)")

        // Writable export, enabled bitmap: served, with a notice; a write shows up at once.
        // (-B without IMAGE applies to the only --export, which adds b2 itself.)
        let server = try ServerProcess([Peers.swiftnbd, "serve", "-f", "qcow2", "-B", "b0", "--export", "x=\(path),bitmap=b2", "--unix", sock],
                                       listener: .unix(path: sock))
        let io = try run(["qemu-io", "-f", "raw", "-c", "write -P 4 30M 4k", "nbd+unix:///x?socket=\(sock)"])
        #expect(io.succeeded, "\(io)")
        let map = try run(["nbdinfo", "--map=qemu:dirty-bitmap:b0", "nbd+unix:///x?socket=\(sock)"])
        #expect(map.stdout.contains("31457280") && map.stdout.contains("dirty"), "\(map)")
        let disabled = try run(["nbdinfo", "--map=qemu:dirty-bitmap:b2", "nbd+unix:///x?socket=\(sock)"])
        #expect(!disabled.stdout.contains("31457280"), "b2 is disabled: \(disabled)")
        #expect(server.stop() == 0)
        #expect(server.log.contains("bitmap 'b0' is enabled on a writable export"), "\(server.log)")
        let info = try run(["qemu-img", "info", "--output=json", path])
        #expect(!info.stdout.contains("in-use"), "\(info)")
    }
}
