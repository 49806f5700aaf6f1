import BlockDevices
import Foundation
import Logging
import NBDProtocol
import NBDTLS
import Testing
@testable import NBDServer

/// `qemu:dirty-bitmap:NAME` contexts: which queries select them (as QEMU's server does), and
/// BLOCK_STATUS answering one chunk per selected bitmap with DIRTY (1) / clean (0) extents.
/// The bitmaps here are in-memory runs; the real qcow2 bitmaps against qemu-nbd -B are in
/// Tests/InteropTests/Qcow2BitmapInteropTests.swift.
@Suite("Dirty-bitmap metadata contexts")
struct DirtyBitmapContextTests {
    static let export = ExportDescriptor(name: "disk", size: 1 << 20, offersAllocationDepth: true, dirtyBitmaps: ["b0", "b1"])

    @Test("LIST: no query or the qemu: wildcards list the bitmaps; SET selects only exact names, with ids 3, 4")
    func queries() {
        let r = MetaContextQueryResolver(export: Self.export)
        let b0 = NBDMetaContext.dirtyBitmap(name: "b0", index: 0), b1 = NBDMetaContext.dirtyBitmap(name: "b1", index: 1)
        #expect(r.contexts(for: [], listing: true) == [.baseAllocation, .allocationDepth, b0, b1])
        #expect(r.contexts(for: ["qemu:"], listing: true) == [.allocationDepth, b0, b1])
        #expect(r.contexts(for: ["qemu:dirty-bitmap:"], listing: true) == [b0, b1])
        #expect(r.contexts(for: ["qemu:dirty-bitmap:b1"], listing: true) == [b1])
        #expect(r.contexts(for: ["qemu:", "qemu:dirty-bitmap:"], listing: false) == [])
        #expect(r.contexts(for: ["qemu:dirty-bitmap:b1", "base:allocation", "qemu:dirty-bitmap:b1"], listing: false) == [b1, .baseAllocation])
        #expect(r.contexts(for: ["qemu:dirty-bitmap:nope", "qemu:dirty-bitmap:B0", "qemu:dirty-bitmap:b0x"], listing: false) == [])
        #expect(b0.name == "qemu:dirty-bitmap:b0" && b0.contextID == 3 && b1.contextID == 4)
        let none = MetaContextQueryResolver(export: ExportDescriptor(name: "raw", size: 4096))
        #expect(none.contexts(for: ["qemu:dirty-bitmap:", "qemu:dirty-bitmap:b0"], listing: true) == [])
    }

    /// A bitmap dirty on `[64 KiB, 192 KiB)` and `[512 KiB, 516 KiB)`, clean elsewhere.
    static let dirtyRanges: [Range<UInt64>] = [65536..<196608, 524288..<528384]

    static func runs(_ offset: UInt64, _ length: UInt64, _ maxRuns: Int) throws -> [BlockStatusExtent] {
        var result: [BlockStatusExtent] = []
        var position = offset
        let end = offset + length
        while position < end && result.count < maxRuns {
            if let r = dirtyRanges.first(where: { $0.contains(position) }) {
                result.append(BlockStatusExtent(length: min(r.upperBound, end) - position, flags: 1))
                position = min(r.upperBound, end)
            } else {
                let next = dirtyRanges.map(\.lowerBound).filter { $0 > position }.min() ?? end
                result.append(BlockStatusExtent(length: min(next, end) - position, flags: 0))
                position = min(next, end)
            }
        }
        return result
    }

    func start(extended: Bool, failing: Bool = false) throws -> (TestPeer, Background<TransmissionDriver.Ending>) {
        let device = MemoryDevice(size: 1 << 20, chunkSize: 4096)
        let (serverFD, clientFD) = try makeSocketPair()
        let b0 = NBDMetaContext.dirtyBitmap(name: "b0", index: 0), b1 = NBDMetaContext.dirtyBitmap(name: "b1", index: 1)
        let session = NegotiatedSession(
            export: Self.export, structuredReplies: true, extendedHeaders: extended,
            metaContexts: [NBDMetaContext.baseAllocation.contextID: .baseAllocation, b0.contextID: b0, b1.contextID: b1],
            clientRequestedBlockSizes: false, transmissionFlags: Self.export.advertisedFlags(structuredOrExtended: true),
            clientFlags: [.fixedNewstyle], tlsActive: false, peerIdentity: nil)
        let bitmaps = [
            ExportedDirtyBitmap(name: "b0") { o, l, m in try Self.runs(o, l, m) },
            ExportedDirtyBitmap(name: "b1") { o, l, m in
                if failing { throw BlockDeviceError(.io, "bitmap data unreadable") }
                return [BlockStatusExtent(length: l, flags: 0)]
            },
        ]
        let stream = SocketStream(fd: serverFD)
        let driver = TransmissionDriver(context: TransmissionContext(session: session, device: device, dirtyBitmaps: bitmaps), stream: stream,
                                        logger: Logger(label: "bitmaps"), maxThreads: 2, inFlightLimit: 4, onSendFailure: { _ in })
        let run = Background { let ending = driver.run(); stream.close(); return ending }
        return (TestPeer(fd: clientFD), run)
    }

    @Test("BLOCK_STATUS sends one chunk per selected context; bitmap extents start at the offset, REQ_ONE gives one",
          arguments: [false, true])
    func blockStatus(extended: Bool) throws {
        let (peer, run) = try start(extended: extended)
        let form: BlockStatusChunkPayload.Form = extended ? .extended : .compact
        let requestForm: NBDRequest.Form = extended ? .extended : .compact
        try peer.send(NBDRequest(command: .blockStatus, cookie: 1, offset: 32768, length: 512 * 1024), form: requestForm)
        let chunks = try peer.chunks(extended: extended)
        #expect(chunks.map(\.header.type) == Array(repeating: extended ? .blockStatusExtended : .blockStatus, count: 3))
        let payloads = try chunks.map { try BlockStatusChunkPayload(decoding: $0.payload, form: form) }
        #expect(payloads.map(\.contextID) == [1, 3, 4])
        #expect(payloads[1].extents == [BlockStatusExtent(length: 32768, flags: 0), BlockStatusExtent(length: 131072, flags: 1),
                                        BlockStatusExtent(length: 327680, flags: 0), BlockStatusExtent(length: 4096, flags: 1),
                                        BlockStatusExtent(length: 28672, flags: 0)])
        #expect(payloads[2].extents == [BlockStatusExtent(length: 512 * 1024, flags: 0)])

        try peer.send(NBDRequest(command: .blockStatus, flags: .requestOne, cookie: 2, offset: 100_000, length: 600_000), form: requestForm)
        let one = try peer.chunks(extended: extended).map { try BlockStatusChunkPayload(decoding: $0.payload, form: form) }
        #expect(one.first { $0.contextID == 3 }?.extents == [BlockStatusExtent(length: 96608, flags: 1)])
        try peer.send(NBDRequest(command: .disconnect, cookie: 3), form: requestForm)
        #expect(run.wait() == .clientDisconnected)
    }

    @Test("a bitmap that cannot be read fails that request with EIO, and the connection goes on")
    func failingBitmap() throws {
        let (peer, run) = try start(extended: false, failing: true)
        try peer.send(NBDRequest(command: .blockStatus, cookie: 1, offset: 0, length: 4096))
        let error = try peer.chunks()
        #expect(error.map(\.header.type) == [.error])
        #expect(try ErrorChunkPayload(decoding: error[0].payload, type: .error).error == .EIO)
        try peer.send(NBDRequest(command: .read, cookie: 2, offset: 0, length: 512))
        #expect(try !peer.chunks().isEmpty)
        try peer.send(NBDRequest(command: .disconnect, cookie: 3))
        #expect(run.wait() == .clientDisconnected)
    }
}
