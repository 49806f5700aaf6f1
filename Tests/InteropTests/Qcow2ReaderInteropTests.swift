import BlockDevices
import Foundation
import Qcow2
import Testing

/// Our qcow2 reader against qemu-img 7.2 on the committed fixtures (Fixtures/qcow2, made by
/// scripts/make-qcow2-fixtures.sh).
@Suite("qcow2 reader versus qemu-img", .noLeftoverProcesses)
struct Qcow2ReaderInteropTests {
    @Test("every fixture reads exactly like qemu-img convert -O raw", .enabled(if: Peers.available("qemu-img")),
          arguments: Qcow2Fixtures.readable)
    func readsLikeQemu(_ name: String) throws {
        let tmp = TempDir("qcow2-read")
        let raw = tmp.file("expected.raw")
        let convert = try run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", Qcow2Fixtures.path(name), raw])
        try #require(convert.succeeded, "\(convert)")
        let image = try Qcow2Image(path: Qcow2Fixtures.path(name), readOnly: true)
        let expected = try Data(contentsOf: URL(fileURLWithPath: raw))
        #expect(image.size == UInt64(expected.count))
        let actual = try readWholeDevice(image)
        if actual != expected {
            let first = zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
            Issue.record("\(name): contents differ, first at byte \(first)")
        }
        try image.close()
    }

    @Test("block status matches qemu-img map",
          .enabled(if: Peers.available("qemu-img")), arguments: Qcow2Fixtures.readable)
    func blockStatusLikeQemu(_ name: String) throws {
        let map = try qemuMap(Qcow2Fixtures.path(name))
        let image = try Qcow2Image(path: Qcow2Fixtures.path(name), readOnly: true)
        let expectedFlags = mergeRuns(map.map { ($0.length, $0.flags) })
        let expectedDepths = mergeRuns(map.map { ($0.length, $0.depth) })
        let flags = try allExtents(image), depths = try allDepths(image)
        #expect(describe(flags) == describe(expectedFlags), "\(name) base:allocation")
        // qemu-img map and qemu-nbd differ past the end of a shorter backing file (map: absent;
        // qemu-nbd: depth of that backing file). We serve NBD, so depths are compared with
        // qemu-nbd in Qcow2BlockStatusInteropTests; here only where no such region exists.
        if !name.hasPrefix("chain/") {
            #expect(describe(depths) == describe(expectedDepths), "\(name) allocation depth")
        }
    }

    @Test("2 MiB clusters (generated at test time: a committed copy would be over 6 MiB) read like qemu-img",
          .enabled(if: Peers.available("qemu-img", "qemu-io")))
    func twoMegabyteClusters() throws {
        let tmp = TempDir("qcow2-2m")
        let path = tmp.file("c2m.qcow2"), raw = tmp.file("c2m.raw")
        for command in [["qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=2M", path, "9M"],
                        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5c 1M 4k", "-c", "write -z 4M 2M",
                         "-c", "write -P 0x5d 8388000 500", path],
                        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, raw]] {
            let result = try run(command)
            try #require(result.succeeded, "\(result)")
        }
        let image = try Qcow2Image(path: path, readOnly: true)
        #expect(try readWholeDevice(image, chunk: 3 << 20) == Data(contentsOf: URL(fileURLWithPath: raw)))
        let map = try qemuMap(path)
        #expect(describe(try allExtents(image)) == describe(mergeRuns(map.map { ($0.length, $0.flags) })))
    }

    static let corrupt: [(String, BlockDeviceError.Code, String)] = [
        ("bad-magic.qcow2", .badFormat, "magic"),
        ("bad-version.qcow2", .unsupportedFeature, "version 4"),
        ("bad-cluster-bits.qcow2", .badFormat, "cluster_bits"),
        ("l1-past-eof.qcow2", .badFormat, "L1 table"),
        ("huge-l1.qcow2", .badFormat, "L1 table"),
        ("refcount-order.qcow2", .badFormat, "refcount_order"),
        ("refcount-table-huge.qcow2", .badFormat, "refcount table"),
        ("unknown-incompatible.qcow2", .unsupportedFeature, "unknown incompatible"),
        ("corrupt-bit.qcow2", .unsupportedFeature, "corrupt"),
        ("encrypted.qcow2", .unsupportedFeature, "encryption"),
        ("external-data.qcow2", .unsupportedFeature, "external data file"),
        ("loop-a.qcow2", .badFormat, "loop"),
        ("self-loop.qcow2", .badFormat, "loop"),
        ("missing-backing.qcow2", .notFound, "does-not-exist.qcow2"),
        ("protocol-backing.qcow2", .unsupportedFeature, "nbd"),
        ("truncated-header.qcow2", .badFormat, "too short"),
    ]

    @Test("corrupt and unsupported images are refused with an error that names the problem",
          arguments: 0..<corrupt.count)
    func refusesCorrupt(_ i: Int) throws {
        let (name, code, words) = Self.corrupt[i]
        let path = Qcow2Fixtures.path("corrupt/" + name)
        let error = try #require(throws: BlockDeviceError.self, "\(name)") { try Qcow2Image(path: path, readOnly: true) }
        #expect(error.code == code, "\(name): \(error)")
        #expect(error.message.contains(words), "\(name): \(error)")
    }

    @Test("an L2 table pointer past the end of the file fails reads cleanly")
    func l2PastEnd() throws {
        let image = try Qcow2Image(path: Qcow2Fixtures.path("corrupt/l2-past-eof.qcow2"), readOnly: true)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let error = try #require(throws: BlockDeviceError.self) { try buffer.withUnsafeMutableBytes { try image.read(into: $0, at: 0) } }
        #expect(error.code == .badFormat)
        #expect(throws: BlockDeviceError.self) { try image.extents(offset: 0, length: 4096) }
    }

    @Test("qemu-img agrees the broken fixtures are unusable", .enabled(if: Peers.available("qemu-img")))
    func qemuRefusesToo() throws {
        // (Loops are left out: qemu-img 7.2 spins on them until killed.)
        let skipped = ["missing-backing.qcow2", "protocol-backing.qcow2", "loop-a.qcow2", "self-loop.qcow2"]
        for (name, _, _) in Self.corrupt where !skipped.contains(name) {
            let result = try run(["qemu-img", "info", "-U", Qcow2Fixtures.path("corrupt/" + name)], timeout: 20)
            let convert = try run(["qemu-img", "convert", "-U", "-O", "raw", Qcow2Fixtures.path("corrupt/" + name), "/dev/null"], timeout: 20)
            #expect(!result.succeeded || !convert.succeeded, "\(name): qemu-img accepted it")
        }
    }
}
