import Foundation
import Testing

/// `swiftnbd copy --dirty-bitmap NAME` against qemu-nbd -B NAME over TLS with client
/// certificates: full + incrementals form a qcow2 chain that qemu-img and swiftnbd copy
/// restore identical to the disk, only dirty extents move, and dirty zero runs land in the
/// overlay as zero clusters.
@Suite("swiftnbd copy --dirty-bitmap", .serialized, .noLeftoverProcesses)
struct CopyDirtyBitmapInteropTests {
    static let tools = Peers.available("qemu-img", "qemu-io", "qemu-nbd", "certtool")
    static let size = 64 << 20

    struct Fixture {
        let qemu: QEMUGeneration
        let dir: TempDir
        let pki: MigrationPKI
        let disk: String

        init(_ label: String, qemu: QEMUGeneration) throws {
            self.qemu = qemu
            pki = try MigrationPKI.shared.get()
            dir = TempDir("copy-bitmap-\(label)-\(qemu.name)")
            disk = dir.file("disk.qcow2")
            let raw = dir.file("seed.raw")
            // 32 MiB of data, then 32 MiB never written (unallocated in the qcow2 image).
            try makePatternFile(raw, size: 32 << 20, seed: 41)
            try must([qemu.img, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, disk])
            try must([qemu.img, "resize", "-q", "-f", "qcow2", disk, String(CopyDirtyBitmapInteropTests.size)])
        }

        @discardableResult
        func must(_ arguments: [String]) throws -> RunResult {
            let result = try run(arguments)
            guard result.succeeded else { throw FixtureFailure("\(arguments.joined(separator: " ")): \(result)") }
            return result
        }

        /// qemu-nbd exports the disk read-only over TLS (client certificates required), with
        /// `bitmap` as qemu:dirty-bitmap:NAME.
        func export(bitmap: String?) throws -> (ServerProcess, String) {
            let port = FreePort.next()
            var arguments = [qemu.nbd, "--object", QEMUTLS.x509(dir: pki.trusted, endpoint: "server", verifyPeer: true),
                             "--tls-creds", "tls0", "-f", "qcow2", "-r", "-x", "disk", "-b", "127.0.0.1", "-p", "\(port)", "-t"]
            if let bitmap { arguments += ["-B", bitmap] }
            let server = try startTLSPeer(arguments + [disk], port: port)
            return (server, "nbds://localhost:\(port)/disk?tls-certificates=\(pki.trusted)")
        }

        func swiftnbdCopy(_ arguments: [String]) throws -> RunResult {
            try run([Peers.swiftnbd, "copy", "--no-progress"] + arguments)
        }

        /// `qemu-img compare` of the disk with an image (a chain is read through its backing files).
        func compareWithDisk(_ image: String, format: String = "qcow2") throws -> RunResult {
            try run([qemu.img, "compare", "-f", "qcow2", "-F", format, disk, image])
        }
    }

    /// "size N read N written N zeroed N skipped N …" from `copy --stats`.
    static func stats(_ output: String) -> [String: UInt64] {
        let words = output.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
        var result: [String: UInt64] = [:]
        var index = 0
        while index + 1 < words.count {
            if let value = UInt64(words[index + 1]) { result[words[index]] = value }
            index += 1
        }
        return result
    }

    @Test("full + two incrementals over TLS restore identical with qemu-img and swiftnbd copy; only dirty extents move",
          .enabled(if: tools), .timeLimit(.minutes(3)), arguments: QEMUGeneration.all)
    func chain(qemu: QEMUGeneration) throws {
        let f = try Fixture("chain", qemu: qemu)
        let full = f.dir.file("full.qcow2")
        do {
            let (server, uri) = try f.export(bitmap: nil)
            defer { server.stop() }
            let copy = try f.swiftnbdCopy([uri, full])
            try #require(copy.succeeded, "\(copy)\n\(server.log)")
        }
        #expect(try f.compareWithDisk(full).succeeded)
        // An in-place destination: a raw copy of the full backup, brought up to date later.
        let inPlace = f.dir.file("in-place.raw")
        try #require(try f.swiftnbdCopy([full, inPlace]).succeeded)

        // Checkpoint 1, then guest-like changes: data (aligned, and an unaligned tail that
        // dirties a second granule), zeroes over data, a discard, data where nothing was.
        try f.must([qemu.img, "bitmap", "--add", "-f", "qcow2", f.disk, "ck1"])
        try f.must([qemu.io, "-f", "qcow2", "-c", "write -P 0x11 4M 1M", "-c", "write -P 0x22 40M 100k",
                    "-c", "write -z 8M 2M", "-c", "discard 12M 1M", "-c", "write -P 0x33 50M 64k", f.disk])
        let inc1 = f.dir.file("inc1.qcow2")
        do {
            let (server, uri) = try f.export(bitmap: "ck1")
            defer { server.stop() }
            let copy = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", "--backing", full, "--stats", uri, inc1])
            try #require(copy.succeeded, "\(copy)\n\(server.log)")
            let stats = Self.stats(copy.stdout)
            // Dirty data: 1 MiB + two 64 KiB granules + one granule; dirty zeroes: 2 MiB + 1 MiB.
            let dirtyData: UInt64 = (1 << 20) + 2 * 65536 + 65536
            #expect(stats["read"] == dirtyData, "\(copy.stdout)")
            #expect(stats["written"] == dirtyData, "\(copy.stdout)")
            #expect(stats["zeroed"] == 3 << 20, "\(copy.stdout)")
            #expect(stats["skipped"] == UInt64(Self.size) - dirtyData - (3 << 20), "\(copy.stdout)")
        }
        #expect(try f.compareWithDisk(inc1).succeeded)
        #expect(try run([qemu.img, "check", "-q", inc1]).succeeded)
        // The zeroed range is recorded in the overlay itself (depth 0) as zeroes, not data.
        let map = try f.must([qemu.img, "map", "--output=json", "-f", "qcow2", inc1])
        let entries = try JSONSerialization.jsonObject(with: Data(map.stdout.utf8)) as? [[String: Any]] ?? []
        let zeroInOverlay = entries.contains { entry in
            let start = entry["start"] as? Int ?? -1, length = entry["length"] as? Int ?? 0
            return start <= 8 << 20 && start + length >= 10 << 20 && entry["depth"] as? Int == 0
                && entry["zero"] as? Bool == true && entry["data"] as? Bool == false
        }
        #expect(zeroInOverlay, "\(map.stdout)")
        let info = try f.must([qemu.img, "info", "--output=json", inc1])
        #expect(info.stdout.contains("\"backing-filename\": \"full.qcow2\""), "\(info.stdout)")

        // Checkpoint 2 on top of the first incremental.
        try f.must([qemu.img, "bitmap", "--add", "-f", "qcow2", f.disk, "ck2"])
        try f.must([qemu.io, "-f", "qcow2", "-c", "write -P 0x44 20M 256k", "-c", "write -z 4M 64k", f.disk])
        let inc2 = f.dir.file("inc2.qcow2")
        do {
            let (server, uri) = try f.export(bitmap: "ck2")
            defer { server.stop() }
            let copy = try f.swiftnbdCopy(["--dirty-bitmap", "ck2", "--backing", inc1, "--stats", "--verify", uri, inc2])
            try #require(copy.succeeded, "\(copy)\n\(server.log)")
            #expect(Self.stats(copy.stdout)["read"] == 256 << 10, "\(copy.stdout)")
        }
        #expect(try f.compareWithDisk(inc2).succeeded)
        // Restore the chain with swiftnbd copy and with qemu-img convert.
        let restored = f.dir.file("restored.raw")
        try #require(try f.swiftnbdCopy([inc2, restored]).succeeded)
        #expect(try f.compareWithDisk(restored, format: "raw").succeeded)
        let converted = f.dir.file("converted.raw")
        try f.must([qemu.img, "convert", "-f", "qcow2", "-O", "raw", inc2, converted])
        #expect(filesEqual(restored, converted))

        // ck1 still records everything since checkpoint 1: bring the raw copy up to date in
        // place, once as a local file and once as an export of `swiftnbd serve` over TLS.
        let served = f.dir.file("served.raw")
        try #require(try f.swiftnbdCopy([inPlace, served]).succeeded)
        do {
            let (server, uri) = try f.export(bitmap: "ck1")
            defer { server.stop() }
            let copy = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", uri, inPlace])
            try #require(copy.succeeded, "\(copy)\n\(server.log)")
            let port = FreePort.next()
            let serve = try startTLSPeer(TLSServe.arguments(port: port, exports: [("disk", served)])
                                         + ["--tls-certificates", f.pki.trusted], port: port)
            defer { serve.stop() }
            let toServe = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", "--flush", uri,
                                              "nbds://localhost:\(port)/disk?tls-certificates=\(f.pki.trusted)"])
            try #require(toServe.succeeded, "\(toServe)\n\(serve.log)")
        }
        #expect(try f.compareWithDisk(inPlace, format: "raw").succeeded)
        #expect(try f.compareWithDisk(served, format: "raw").succeeded)
    }

    @Test("swiftnbd serve --bitmap as the source: the server records the writes it serves, exports them live over TLS, and the incremental restores identical",
          .enabled(if: tools), .timeLimit(.minutes(3)), arguments: QEMUGeneration.all)
    func fromSwiftnbdServe(qemu: QEMUGeneration) throws {
        let f = try Fixture("serve", qemu: qemu)
        // Checkpoint ck1 is taken with the full backup.
        try f.must([qemu.img, "bitmap", "--add", "-f", "qcow2", f.disk, "ck1"])
        let full = f.dir.file("full.qcow2")
        try f.must([qemu.img, "convert", "-q", "-f", "qcow2", "-O", "qcow2", f.disk, full])

        let port = FreePort.next()
        let serve = try startTLSPeer(TLSServe.arguments(port: port, exports: [("disk", f.disk + ",format=qcow2")])
                                     + ["--bitmap", "ck1", "--tls-certificates", f.pki.trusted], port: port)
        defer { serve.stop() }
        // The guest's writes arrive through the export itself, so swiftnbd's driver is what
        // records them in ck1: data, an unaligned write spanning two granules, zeroes, a discard.
        let image = "driver=nbd,host=localhost,port=\(port),export=disk,tls-creds=tls0"
        let writes = try run([qemu.io, "--object", QEMUTLS.x509(dir: f.pki.trusted, endpoint: "client"), "--image-opts",
                              "-c", "write -P 0x51 1M 192k", "-c", "write -P 0x52 30M 8k", "-c", "write -P 0x53 33M 100k",
                              "-c", "write -z 2M 1M", "-c", "discard 16M 1M", "-c", "flush", image])
        try #require(writes.succeeded, "\(writes)\n\(serve.log)")

        let inc1 = f.dir.file("inc1.qcow2")
        let copy = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", "--backing", full, "--stats", "--verify",
                                       "nbds://localhost:\(port)/disk?tls-certificates=\(f.pki.trusted)", inc1])
        try #require(copy.succeeded, "\(copy)\n\(serve.log)")
        let stats = Self.stats(copy.stdout)
        // Granules of 64 KiB: 192 KiB = 3; 30M+8k = 1; 33M..33M+100k spans 2, but past 32 MiB
        // nothing else was ever written, so the last 28 KiB of that second granule read as
        // zero and are zeroed, not copied. Zeroed besides: the 1 MiB of WRITE_ZEROES and the
        // 1 MiB discard (which changed what reads return: it was data).
        let zeroTail = (64 << 10) - (100 << 10) % (64 << 10)
        #expect(stats["read"] == UInt64(6 * 65536 - zeroTail), "\(copy.stdout)")
        #expect(stats["zeroed"] == UInt64((2 << 20) + zeroTail), "\(copy.stdout)")
        serve.stop()

        #expect(try f.compareWithDisk(inc1).succeeded)
        #expect(try run([qemu.img, "check", "-q", f.disk]).succeeded)
        let info = try f.must([qemu.img, "info", "--output=json", f.disk])
        #expect(info.stdout.contains("\"name\": \"ck1\""), "\(info.stdout)")
        #expect(!info.stdout.contains("in-use"), "\(info.stdout)")
    }

    @Test("an unknown bitmap, a missing destination and a backing image of another size are refused with specific errors",
          .enabled(if: tools), .timeLimit(.minutes(2)))
    func refusals() throws {
        let f = try Fixture("refusals", qemu: .debian)
        try f.must([qemu(f).img, "bitmap", "--add", "-f", "qcow2", f.disk, "ck1"])
        let full = f.dir.file("full.qcow2")
        try f.must([qemu(f).img, "convert", "-q", "-f", "qcow2", "-O", "qcow2", f.disk, full])
        let small = f.dir.file("small.qcow2")
        try f.must([qemu(f).img, "create", "-q", "-f", "qcow2", small, "1M"])
        let (server, uri) = try f.export(bitmap: "ck1")
        defer { server.stop() }

        let unknown = try f.swiftnbdCopy(["--dirty-bitmap", "nosuch", "--backing", full, uri, f.dir.file("a.qcow2")])
        #expect(!unknown.succeeded)
        #expect(unknown.stderr.contains("exports no dirty bitmap 'nosuch'"), "\(unknown)")
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("a.qcow2")))

        let missing = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", uri, f.dir.file("b.qcow2")])
        #expect(!missing.succeeded)
        #expect(missing.stderr.contains("does not exist: an incremental copy writes into the previous backup"), "\(missing)")

        let resized = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", "--backing", small, uri, f.dir.file("c.qcow2")])
        #expect(!resized.succeeded)
        #expect(resized.stderr.contains("a resized disk needs a full copy"), "\(resized)")
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("c.qcow2")))

        let local = try f.swiftnbdCopy(["--dirty-bitmap", "ck1", f.disk, f.dir.file("d.qcow2")])
        #expect(!local.succeeded)
        #expect(local.stderr.contains("--dirty-bitmap needs an NBD source"), "\(local)")
    }

    private func qemu(_ f: Fixture) -> QEMUGeneration { f.qemu }
}
