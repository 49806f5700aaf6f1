import BlockDevices
import Foundation
import TestSupport
import Qcow2
import Testing

/// qcow2 images served by `swiftnbd serve --format qcow2`, driven by real clients (qemu-io,
/// fio's nbd engine, nbdinfo), then judged with qemu-img check/compare.
@Suite("qcow2 through swiftnbd serve", .serialized, .noLeftoverProcesses)
struct Qcow2ServeInteropTests {
    static func qemuImg(_ args: [String]) throws {
        let r = try run(["qemu-img"] + args)
        guard r.succeeded else { throw BlockDeviceError(.io, "qemu-img \(args.joined(separator: " ")): \(r)") }
    }

    /// A seeded qemu-io script of writes, FUA writes, zero writes and flushes within `size`.
    static func script(seed: UInt64, count: Int, size: UInt64, granularity: UInt64) -> [QemuIOCommand] {
        var rng = SplitMix64(seed: seed)
        var commands: [QemuIOCommand] = []
        // Distinct slots, so no command overwrites another one's bytes within a script.
        let slots = size / (4 * granularity)
        var used = Set<UInt64>()
        for _ in 0..<count {
            var slot = UInt64.random(in: 0..<slots, using: &rng)
            for _ in 0..<8 where used.contains(slot) { slot = UInt64.random(in: 0..<slots, using: &rng) }
            if used.contains(slot) { continue }
            used.insert(slot)
            let offset = slot * 4 * granularity + UInt64.random(in: 0..<granularity, using: &rng) / 512 * 512
            let length = UInt64.random(in: 1...(3 * granularity / 512), using: &rng) * 512
            switch Int.random(in: 0..<10, using: &rng) {
            case 0..<4: commands.append(QemuIOCommand(kind: .write(pattern: UInt8.random(in: 1...255, using: &rng), fua: true), offset: offset, length: length))
            case 4..<7: commands.append(QemuIOCommand(kind: .write(pattern: UInt8.random(in: 1...255, using: &rng), fua: false), offset: offset, length: length))
            case 7: commands.append(QemuIOCommand(kind: [.zero, .zeroUnmap, .discard][Int.random(in: 0..<3, using: &rng)], offset: offset, length: length))
            default: commands.append(QemuIOCommand(kind: .flush))
            }
        }
        return commands
    }

    @Test("qemu-io workloads through the server leave a check-clean image equal to a raw twin",
          .enabled(if: Qcow2Serve.available && Peers.available("qemu-img", "qemu-io")),
          arguments: [("64k", 8 << 20), ("512", 4 << 20), ("4k", 6 << 20)] as [(String, Int)])
    func qemuIOWorkload(_ cluster: String, _ size: Int) throws {
        let dir = TempDir("qcow2-serve")
        let image = dir.file("s.qcow2"), twin = dir.file("twin.raw"), sock = dir.file("nbd.sock")
        try Self.qemuImg(["create", "-q", "-f", "qcow2", "-o", "cluster_size=\(cluster)", image, "\(size)"])
        try makeSparseFile(twin, size: UInt64(size))
        let granularity: UInt64 = cluster == "512" ? 2048 : 65536
        let server = try Qcow2Serve.start(image: image, socket: sock)
        for round in 0..<3 {
            // Discard leaves unspecified contents (raw punches holes, qcow2 ignores partial
            // clusters), so this comparison uses every command but discard.
            let commands = Self.script(seed: UInt64(round + 1), count: 80, size: UInt64(size), granularity: granularity)
                .filter { if case .discard = $0.kind { false } else { true } }
            let args = commands.flatMap { ["-c", $0.text] }
            let served = try run(["qemu-io", "-f", "raw"] + args + [Qcow2Serve.uri(sock)])
            #expect(served.succeeded && !served.stdout.contains("error"), "\(served)\n\(server.log)")
            let direct = try run(["qemu-io", "-f", "raw"] + args + [twin])
            try #require(direct.succeeded, "\(direct)")
        }
        #expect(Qcow2Serve.stopCleanly(server), "\(server.log)")
        let check = try qemuImgEveryGeneration(["check", image])
        #expect(check.status == 0, "\(check)\n\(server.log)")
        let compare = try qemuImgEveryGeneration(["compare", "-f", "qcow2", "-F", "raw", image, twin])
        #expect(compare.status == 0, "\(compare)")
    }

    @Test("fio's nbd engine with verification through the server, then qemu-img check",
          .enabled(if: Qcow2Serve.available && Peers.available("qemu-img", "fio")))
    func fioVerify() throws {
        let dir = TempDir("qcow2-fio")
        let image = dir.file("f.qcow2"), sock = dir.file("nbd.sock")
        try Self.qemuImg(["create", "-q", "-f", "qcow2", "-o", "cluster_size=64k", image, "64M"])
        let server = try Qcow2Serve.start(image: image, socket: sock)
        let fio = try run(["fio", "--name=qcow2", "--ioengine=nbd", "--uri=\(Qcow2Serve.uri(sock))",
                           "--rw=randwrite", "--bs=4k", "--bsrange=512-64k", "--size=64M", "--io_size=24M",
                           "--iodepth=16", "--numjobs=1", "--verify=crc32c", "--do_verify=1",
                           "--verify_fatal=1", "--verify_state_save=0", "--randseed=1234", "--output-format=terse"], timeout: 240)
        #expect(fio.succeeded, "\(fio)\n\(server.log)")
        let fioMixed = try run(["fio", "--name=qcow2mix", "--ioengine=nbd", "--uri=\(Qcow2Serve.uri(sock))",
                                "--rw=randrw", "--bs=16k", "--size=64M", "--io_size=16M", "--iodepth=8",
                                "--verify=md5", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=terse"], timeout: 240)
        #expect(fioMixed.succeeded, "\(fioMixed)\n\(server.log)")
        #expect(Qcow2Serve.stopCleanly(server), "\(server.log)")
        let check = try qemuImgEveryGeneration(["check", image])
        #expect(check.status == 0, "\(check)")
    }

    @Test("block status through the server matches qemu-nbd (base:allocation, qemu:allocation-depth)",
          .enabled(if: Qcow2Serve.available && Peers.available("qemu-nbd", "nbdinfo")),
          arguments: ["v3.qcow2", "chain/top.qcow2", "extended-l2-backed.qcow2", "compressed-zstd.qcow2", "snapshot.qcow2"])
    func blockStatusThroughServer(_ name: String) throws {
        let path = Qcow2Fixtures.path(name)
        let dir = TempDir("qcow2-map")
        let sock = dir.file("nbd.sock")
        let server = try Qcow2Serve.start(image: path, socket: sock, readOnly: true)
        defer { server.stop() }
        for context in ["base:allocation", "qemu:allocation-depth"] {
            let ours = try run(["nbdinfo", "--map=\(context)", Qcow2Serve.uri(sock)])
            #expect(ours.succeeded, "\(ours)\n\(server.log)")
            let reference = try nbdinfoMap(context: context, server: ["qemu-nbd", "-r", "-A", "-f", "qcow2", path])
            #expect(describe(parseNbdinfoMap(ours.stdout)) == describe(reference), "\(name) \(context)")
        }
    }

    @Test("SIGKILL of the server at random points never corrupts the image and keeps every flushed write",
          .enabled(if: Qcow2Serve.available && Peers.available("qemu-img", "qemu-io")))
    func crashConsistency() throws {
        let dir = TempDir("qcow2-crash")
        let sock = dir.file("nbd.sock")
        // 512 B clusters (refcount blocks and table growth), 64 KiB, extended L2, and an overlay
        // whose partial writes copy from a raw backing file.
        let images = [("cluster_size=512", dir.file("c512.qcow2"), UInt64(4 << 20), UInt64(2048)),
                      ("cluster_size=64k", dir.file("c64k.qcow2"), UInt64(16 << 20), UInt64(65536)),
                      ("extended_l2=on,cluster_size=16k", dir.file("ext.qcow2"), UInt64(8 << 20), UInt64(16384)),
                      ("cluster_size=4k,backing_file=base.raw,backing_fmt=raw", dir.file("top.qcow2"), UInt64(8 << 20), UInt64(8192))]
        try Self.qemuImg(["create", "-q", "-f", "raw", dir.file("base.raw"), "8M"])
        let fill = try run(["qemu-io", "-f", "raw", "-c", "write -P 0x6b 0 6M", dir.file("base.raw")])
        try #require(fill.succeeded, "\(fill)")
        for (options, path, size, _) in images {
            try Self.qemuImg(["create", "-q", "-f", "qcow2", "-o", options, path, "\(size)"])
        }
        let iterations = Int(ProcessInfo.processInfo.environment["QCOW2_CRASH_ITERATIONS"] ?? "") ?? 120
        var rng = SplitMix64(seed: 99)
        var kills = 0, leaked = 0, verified = 0
        for i in 0..<iterations {
            let (_, path, size, granularity) = images[i % images.count]
            let commands = Self.script(seed: UInt64(1000 + i), count: 40, size: size, granularity: granularity)
            let server = try Qcow2Serve.start(image: path, socket: sock)
            let outPath = dir.file("io.out")
            _ = FileManager.default.createFile(atPath: outPath, contents: nil)
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = ["qemu-io", "-f", "raw"] + commands.flatMap { ["-c", $0.text] } + [Qcow2Serve.uri(sock)]
            let outputHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
            client.standardOutput = outputHandle
            client.standardError = FileHandle.nullDevice
            ProcessLedger.tag(client)
            try spawn(client, closingAfterwards: [outputHandle])
            usleep(UInt32.random(in: 5_000...120_000, using: &rng))
            server.crash()
            kills += 1
            let deadline = Date().addingTimeInterval(20)
            while client.isRunning && Date() < deadline { usleep(5_000) }
            if client.isRunning { kill(client.processIdentifier, SIGKILL); client.waitUntilExit() }
            let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            let acknowledged = output.components(separatedBy: "\n").filter { $0.hasPrefix("wrote ") || ($0.hasPrefix("discard ") && !$0.hasPrefix("discard failed")) }.count

            let check = try run(["qemu-img", "check", path])
            try #require(check.status == 0 || check.status == 3, "iteration \(i): corruption after SIGKILL\n\(check)\n\(server.log)")
            if check.status == 3 { leaked += 1 }
            let durable = durableCommands(commands, acknowledged: acknowledged)
            if !durable.isEmpty {
                let verify = try run(["qemu-io", "-r", "-f", "qcow2"] + durable.flatMap { ["-c", $0.verification!] } + [path])
                try #require(verify.succeeded && !verify.stdout.contains("Pattern verification failed"),
                             "iteration \(i): an acknowledged durable write is missing\n\(verify)\nscript (\(acknowledged) acknowledged): \(commands.map(\.text))\n\(output)\n\(server.log)")
                verified += durable.count
            }
            // Repair leaks now and then so later iterations start from both leaky and clean images.
            if check.status == 3 && i % 4 == 0 { try Self.qemuImg(["check", "-q", "-r", "leaks", path]) }
        }
        #expect(kills == iterations)
        print("qcow2 crash test: \(kills) kills, \(leaked) left leaks, \(verified) durable writes verified")
    }

    @Test("--snapshot writes to a throw-away overlay and leaves the image untouched",
          .enabled(if: Qcow2Serve.available && !Qcow2Serve.usingQemuNbd && Peers.available("qemu-img", "qemu-io")),
          arguments: ["qcow2", "raw"])
    func snapshotOverlay(_ format: String) throws {
        let dir = TempDir("qcow2-snapshot")
        let image = dir.file("base.img"), sock = dir.file("nbd.sock")
        try Self.qemuImg(["create", "-q", "-f", format, image, "4M"])
        let io = try run(["qemu-io", "-f", format, "-c", "write -P 0x42 0 64k", image])
        try #require(io.succeeded, "\(io)")
        let before = try Data(contentsOf: URL(fileURLWithPath: image))
        let server = try ServerProcess([Peers.swiftnbd, "serve", image, "--format", format, "--snapshot", "--unix", sock],
                                       listener: .unix(path: sock))
        let session = try run(["qemu-io", "-f", "raw", "-c", "read -P 0x42 0 64k", "-c", "write -P 0x43 4096 8k",
                               "-c", "read -P 0x43 4096 8k", "-c", "read -P 0x42 12288 4k", "-c", "write -z 1M 64k",
                               "-c", "read -P 0 1M 64k", Qcow2Serve.uri(sock)])
        #expect(session.succeeded && !session.stdout.contains("verification failed"), "\(session)\n\(server.log)")
        #expect(server.stop() == 0, "\(server.log)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: image)) == before, "the base image changed")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter { $0.hasPrefix("swiftnbd-snapshot-") }
        #expect(leftovers.isEmpty, "overlay files left behind: \(leftovers)")
    }

    @Test("--format auto serves a qcow2 image as qcow2; the default raw serves its bytes",
          .enabled(if: Qcow2Serve.available && !Qcow2Serve.usingQemuNbd && Peers.available("qemu-io")))
    func formatAutoAndRaw() throws {
        let path = Qcow2Fixtures.path("v3.qcow2")
        let dir = TempDir("qcow2-auto")
        for (format, check) in [("auto", "read -P 0xab 0 64k"), ("raw", "read -P 0x51 0 1")] {
            let sock = dir.file("\(format).sock")
            let server = try ServerProcess([Peers.swiftnbd, "serve", path, "--format", format, "--read-only", "--unix", sock],
                                           listener: .unix(path: sock))
            let r = try run(["qemu-io", "-r", "-f", "raw", "-c", check, Qcow2Serve.uri(sock)])
            #expect(r.succeeded && !r.stdout.contains("verification failed"), "\(format): \(r)\n\(server.log)")
            server.stop()
        }
    }

    @Test("a corrupt qcow2 image makes serve fail at start with the reason",
          .enabled(if: Qcow2Serve.available && !Qcow2Serve.usingQemuNbd))
    func serveRefusesCorrupt() throws {
        for (name, words) in [("corrupt/bad-magic.qcow2", "magic"), ("corrupt/loop-a.qcow2", "loop"),
                              ("corrupt/unknown-incompatible.qcow2", "incompatible")] {
            let dir = TempDir("qcow2-refuse")
            let r = try run([Peers.swiftnbd, "serve", Qcow2Fixtures.path(name), "--format", "qcow2", "--read-only",
                             "--unix", dir.file("s.sock")], timeout: 30)
            #expect(r.status != 0 && r.stderr.contains(words), "\(name): \(r)")
        }
    }
}
