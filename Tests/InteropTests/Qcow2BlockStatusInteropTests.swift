import BlockDevices
import Foundation
import Qcow2
import Testing

/// Block status of our driver against what qemu-nbd serves for the same image (read with
/// nbdinfo): `base:allocation` and `qemu:allocation-depth`, with qemu-nbd 7.2 and 10.
@Suite("qcow2 block status versus qemu-nbd", .serialized, .noLeftoverProcesses)
struct Qcow2BlockStatusInteropTests {
    @Test("base:allocation and qemu:allocation-depth match qemu-nbd on every fixture",
          .enabled(if: Peers.available("qemu-nbd", "nbdinfo")), arguments: QEMUGeneration.all, Qcow2Fixtures.readable)
    func matchesQemuNbd(qemu: QEMUGeneration, _ name: String) throws {
        let path = Qcow2Fixtures.path(name)
        let image = try Qcow2Image(path: path, readOnly: true)
        let flags = try nbdinfoMap(server: [qemu.nbd, "-r", "-f", "qcow2", path])
        #expect(describe(try allExtents(image)) == describe(flags), "\(name) base:allocation")
        let depths = try nbdinfoMap(context: "qemu:allocation-depth", server: [qemu.nbd, "-r", "-A", "-f", "qcow2", path])
        #expect(describe(try allDepths(image)) == describe(depths), "\(name) qemu:allocation-depth")
    }
}
