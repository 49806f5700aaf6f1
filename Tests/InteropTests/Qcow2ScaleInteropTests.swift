import Foundation
import Testing

/// The sizes users serve: 4K random writes (fio's nbd engine, QD32, verified) spread over a
/// 4 TiB image with 64 KiB clusters and over a 32 GiB image with 4 KiB clusters, once with the
/// default metadata cache and once with a cache of a handful of slices, so that queued L2
/// entries, evictions and reloads interleave on nearly every request. These are the issue's
/// repros: the server used to trap (a force unwrap in the L2 cache) within seconds.
@Suite("qcow2 at real disk sizes", .serialized, .noLeftoverProcesses)
struct Qcow2ScaleInteropTests {
    static let tinyCache = ["--l2-cache-size", "16K", "--refcount-cache-size", "8K"]

    @Test("4K random writes QD32 over a huge sparse image: no crash, data verified, image check-clean",
          .enabled(if: Qcow2Serve.available && Peers.available("qemu-img", "fio")),
          arguments: [
              ("4T", "64k", [], "64m"), ("4T", "64k", tinyCache, "32m"),
              ("32G", "4k", [], "32m"), ("32G", "4k", tinyCache, "32m"),
          ] as [(String, String, [String], String)])
    func randomWritesOverHugeImage(_ size: String, _ cluster: String, _ cacheArgs: [String], _ ioSize: String) throws {
        let dir = TempDir("qcow2-scale")
        let image = dir.file("big.qcow2"), sock = dir.file("nbd.sock")
        try Qcow2ServeInteropTests.qemuImg(["create", "-q", "-f", "qcow2", "-o", "cluster_size=\(cluster)", image, size])
        let server = try ServerProcess([Peers.swiftnbd, "serve", image, "--format", "qcow2", "--unix", sock] + cacheArgs,
                                       listener: .unix(path: sock))
        // Every block is written once (fio's random map) and read back with its checksum.
        let fio = try run(["fio", "--name=scale", "--ioengine=nbd", "--uri=\(Qcow2Serve.uri(sock))",
                           "--rw=randwrite", "--bs=4k", "--iodepth=32", "--size=\(size)", "--io_size=\(ioSize)",
                           "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0",
                           "--randseed=\(Int.random(in: 1...1_000_000))", "--output-format=terse"], timeout: 600)
        #expect(fio.succeeded, "\(fio)\n\(server.log)")
        #expect(server.isRunning, "the server died:\n\(server.log)")
        #expect(Qcow2Serve.stopCleanly(server), "\(server.log)")
        let check = try run(["qemu-img", "check", "--output=json", image], timeout: 300)
        #expect(check.status == 0, "\(check)")
        #expect(!check.stdout.contains("\"leaks\"") && !check.stdout.contains("\"corruptions\""), "\(check)")
    }
}
