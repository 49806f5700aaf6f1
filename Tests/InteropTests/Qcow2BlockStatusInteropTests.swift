import BlockDevices
import Foundation
import Qcow2
import Testing

/// Block status of our driver against what qemu-nbd 7.2 serves for the same image
/// (read with nbdinfo): `base:allocation` and `qemu:allocation-depth`.
@Suite("qcow2 block status versus qemu-nbd", .serialized)
struct Qcow2BlockStatusInteropTests {
    @Test("base:allocation and qemu:allocation-depth match qemu-nbd on every fixture",
          .enabled(if: Peers.available("qemu-nbd", "nbdinfo")), arguments: Qcow2Fixtures.readable)
    func matchesQemuNbd(_ name: String) throws {
        let path = Qcow2Fixtures.path(name)
        let image = try Qcow2Image(path: path, readOnly: true)
        let flags = try nbdinfoMap(server: ["qemu-nbd", "-r", "-f", "qcow2", path])
        #expect(describe(try allExtents(image)) == describe(flags), "\(name) base:allocation")
        let depths = try nbdinfoMap(context: "qemu:allocation-depth", server: ["qemu-nbd", "-r", "-A", "-f", "qcow2", path])
        #expect(describe(try allDepths(image)) == describe(depths), "\(name) qemu:allocation-depth")
    }
}
