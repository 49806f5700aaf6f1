import BlockDevices
import Foundation
import Logging
import NBDProtocol
import NBDTLS
import Testing
@testable import NBDServer

/// The transmission engine driven directly over a socketpair (negotiation bypassed), so each
/// test controls the exact bytes.
@Suite("Transmission engine")
struct TransmissionDriverTests {
    struct Harness {
        let peer: TestPeer
        let run: Background<TransmissionDriver.Ending>
        let device: any BlockDevice
    }

    enum Framing { case simple, structured, extended }

    func start(device: any BlockDevice = MemoryDevice(size: 1 << 20, chunkSize: 4096), writable: Bool = true,
               framing: Framing = .structured, contexts: Bool = true) throws -> Harness {
        let (serverFD, clientFD) = try makeSocketPair()
        let export = ExportDescriptor(
            name: "test", size: device.size,
            transmissionFlags: .derived(from: device.capabilities, writable: writable, multiConnAllowed: true))
        let session = NegotiatedSession(
            export: export, structuredReplies: framing != .simple, extendedHeaders: framing == .extended,
            metaContexts: contexts && framing != .simple ? [NBDMetaContext.baseAllocation.contextID: .baseAllocation] : [:],
            clientRequestedBlockSizes: false,
            transmissionFlags: export.advertisedFlags(structuredOrExtended: framing != .simple),
            clientFlags: [.fixedNewstyle, .noZeroes], tlsActive: false, peerIdentity: nil)
        let context = TransmissionContext(session: session, device: device)
        let stream = SocketStream(fd: serverFD)
        let driver = TransmissionDriver(context: context, stream: stream, logger: Logger(label: "test"),
                                        maxThreads: 4, inFlightLimit: 8, onSendFailure: { _ in })
        let run = Background { let ending = driver.run(); stream.close(); return ending }
        return Harness(peer: TestPeer(fd: clientFD), run: run, device: device)
    }

    @Test("a write then a read over simple replies returns the written bytes")
    func simpleWriteRead() throws {
        let h = try start(framing: .simple)
        let data = (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
        try h.peer.send(NBDRequest(command: .write, flags: .fua, cookie: 1, offset: 1000, length: 5000), payload: data)
        #expect(try h.peer.simpleReply().header == SimpleReplyHeader(error: .success, cookie: 1))
        try h.peer.send(NBDRequest(command: .read, cookie: 2, offset: 1000, length: 5000))
        let reply = try h.peer.simpleReply(dataLength: 5000)
        #expect(reply.header.cookie == 2)
        #expect(reply.data == data)
        try h.peer.send(NBDRequest(command: .disconnect, cookie: 3))
        #expect(h.run.wait() == .clientDisconnected)
        #expect(h.peer.isClosedByServer())
    }

    @Test("a structured read of a sparse range describes holes with OFFSET_HOLE chunks")
    func structuredReadWithHoles() throws {
        let h = try start()
        try h.peer.send(NBDRequest(command: .write, cookie: 1, offset: 65536, length: 4096), payload: [UInt8](repeating: 0xab, count: 4096))
        _ = try h.peer.simpleReply()
        try h.peer.send(NBDRequest(command: .read, cookie: 2, offset: 0, length: 131072))
        let chunks = try h.peer.chunks()
        #expect(chunks.map(\.header.type) == [.offsetHole, .offsetData, .offsetHole])
        #expect(chunks.allSatisfy { $0.header.cookie == 2 })
        #expect(chunks.last?.header.isDone == true)
        let data = try reassemble(chunks, offset: 0, length: 131072)
        #expect(data[65536..<69632].allSatisfy { $0 == 0xab })
        #expect(data[0..<65536].allSatisfy { $0 == 0 } && data[69632...].allSatisfy { $0 == 0 })
        // With DF: one data chunk, holes sent as zero bytes.
        try h.peer.send(NBDRequest(command: .read, flags: .dontFragment, cookie: 3, offset: 0, length: 131072))
        let dfChunks = try h.peer.chunks()
        #expect(dfChunks.map(\.header.type) == [.offsetData])
        #expect(try reassemble(dfChunks, offset: 0, length: 131072) == data)
    }

    @Test("block status reports holes and data, and REQ_ONE returns exactly one extent")
    func blockStatus() throws {
        let h = try start()
        try h.peer.send(NBDRequest(command: .write, cookie: 1, offset: 8192, length: 8192), payload: [UInt8](repeating: 1, count: 8192))
        _ = try h.peer.simpleReply()
        try h.peer.send(NBDRequest(command: .blockStatus, cookie: 2, offset: 0, length: 32768))
        let chunks = try h.peer.chunks()
        #expect(chunks.count == 1)
        let status = try BlockStatusChunkPayload(decoding: chunks[0].payload, form: .compact)
        #expect(status.contextID == NBDMetaContext.baseAllocation.contextID)
        #expect(status.extents == [
            BlockStatusExtent(length: 8192, flags: 3), BlockStatusExtent(length: 8192, flags: 0),
            BlockStatusExtent(length: 16384, flags: 3),
        ])
        try h.peer.send(NBDRequest(command: .blockStatus, flags: .requestOne, cookie: 3, offset: 4096, length: 100))
        let one = try BlockStatusChunkPayload(decoding: try h.peer.chunks()[0].payload, form: .compact)
        #expect(one.extents == [BlockStatusExtent(length: 100, flags: 3)])
    }

    @Test("writes to a read-only export fail with EPERM and the connection keeps serving")
    func readOnlyRefusesWrites() throws {
        let h = try start(device: ReadOnlyDevice(MemoryDevice(size: 65536)), writable: false, framing: .simple)
        try h.peer.send(NBDRequest(command: .write, cookie: 1, offset: 0, length: 512), payload: [UInt8](repeating: 9, count: 512))
        #expect(try h.peer.simpleReply().header.error == .EPERM)
        try h.peer.send(NBDRequest(command: .trim, cookie: 2, offset: 0, length: 512))
        #expect(try h.peer.simpleReply().header.error == .EPERM)
        try h.peer.send(NBDRequest(command: .writeZeroes, cookie: 3, offset: 0, length: 512))
        #expect(try h.peer.simpleReply().header.error == .EPERM)
        try h.peer.send(NBDRequest(command: .read, cookie: 4, offset: 0, length: 512))
        let reply = try h.peer.simpleReply(dataLength: 512)
        #expect(reply.header.error == .success && reply.data.allSatisfy { $0 == 0 })
    }

    @Test("out-of-range, oversize, unknown and badly flagged requests get errors, not a hang-up")
    func invalidRequests() throws {
        let h = try start(framing: .simple)
        let cases: [(NBDRequest, NBDErrno)] = [
            (NBDRequest(command: .read, cookie: 1, offset: 1 << 20, length: 1), .EINVAL),
            (NBDRequest(command: .read, cookie: 2, offset: UInt64.max, length: 512), .EINVAL),
            (NBDRequest(command: .read, cookie: 3, offset: 0, length: 64 << 20), .EINVAL),
            (NBDRequest(command: .writeZeroes, cookie: 4, offset: (1 << 20) - 1, length: 2), .ENOSPC),
            (NBDRequest(command: NBDCommand(rawValue: 99), cookie: 5), .EINVAL),
            (NBDRequest(command: .read, flags: CommandFlags(rawValue: 0x8000), cookie: 6, length: 1), .EINVAL),
            (NBDRequest(command: .trim, cookie: 7, offset: 1 << 20, length: 1), .EINVAL),
        ]
        for (request, expected) in cases {
            try h.peer.send(request)
            let reply = try h.peer.simpleReply()
            #expect(reply.header == SimpleReplyHeader(error: expected, cookie: request.cookie), "\(request)")
        }
        // A write past the end: its payload is drained, so the next request still parses.
        try h.peer.send(NBDRequest(command: .write, cookie: 8, offset: (1 << 20) - 10, length: 100), payload: [UInt8](repeating: 5, count: 100))
        #expect(try h.peer.simpleReply().header == SimpleReplyHeader(error: .ENOSPC, cookie: 8))
        try h.peer.send(NBDRequest(command: .flush, cookie: 9))
        #expect(try h.peer.simpleReply().header == SimpleReplyHeader(error: .success, cookie: 9))
    }

    @Test("a request with the wrong magic is a protocol violation that closes the connection")
    func badMagic() throws {
        let h = try start()
        var bytes = try NBDRequest(command: .read, cookie: 1, length: 512).encoded(form: .compact)
        bytes[0] ^= 0xff
        try h.peer.send(bytes)
        guard case .protocolViolation = h.run.wait() else {
            Issue.record("expected a protocol violation")
            return
        }
        #expect(h.peer.isClosedByServer())
    }

    @Test("a truncated request header ends the connection quietly")
    func truncatedHeader() throws {
        let h = try start()
        try h.peer.send(Array(try NBDRequest(command: .read, cookie: 1, length: 512).encoded(form: .compact).prefix(10)))
        _ = Glibc.shutdown(h.peer.stream.fd, Int32(SHUT_WR))
        #expect(h.run.wait() == .connectionClosed)
    }

    @Test("many pipelined requests are all answered, each with its own cookie")
    func pipelined() throws {
        let h = try start(framing: .simple)
        for i in 0..<64 {
            try h.peer.send(NBDRequest(command: .write, cookie: UInt64(1000 + i), offset: UInt64(i * 4096), length: 4096),
                            payload: [UInt8](repeating: UInt8(i), count: 4096))
        }
        var cookies = Set<UInt64>()
        for _ in 0..<64 {
            let reply = try h.peer.simpleReply()
            #expect(reply.header.error == .success)
            cookies.insert(reply.header.cookie)
        }
        #expect(cookies == Set((0..<64).map { UInt64(1000 + $0) }))
        var back = [UInt8](repeating: 0, count: 4096)
        try back.withUnsafeMutableBytes { try h.device.read(into: $0, at: 63 * 4096) }
        #expect(back.allSatisfy { $0 == 63 })
    }

    @Test("with extended headers replies use 32-byte chunks and success is a NONE chunk")
    func extendedHeaders() throws {
        let h = try start(framing: .extended)
        let data = [UInt8](repeating: 0x42, count: 1024)
        try h.peer.send(NBDRequest(command: .write, flags: .payloadLength, cookie: 1, offset: 512, length: 1024), form: .extended, payload: data)
        let done = try h.peer.chunks(extended: true)
        #expect(done.map(\.header.type) == [.none])
        #expect(done[0].header.offset == 512)
        try h.peer.send(NBDRequest(command: .read, cookie: 2, offset: 512, length: 1024), form: .extended)
        #expect(try reassemble(try h.peer.chunks(extended: true), offset: 512, length: 1024) == data)
        try h.peer.send(NBDRequest(command: .blockStatus, cookie: 3, offset: 0, length: 8192), form: .extended)
        let status = try h.peer.chunks(extended: true)
        #expect(status.map(\.header.type) == [.blockStatusExtended])
        try h.peer.send(NBDRequest(command: .read, cookie: 4, offset: 1 << 20, length: 1), form: .extended)
        let error = try h.peer.chunks(extended: true)
        #expect(error.map(\.header.type) == [.error])
        #expect(try ErrorChunkPayload(decoding: error[0].payload, type: .error).error == .EINVAL)
    }

    @Test("zeroing with FAST_ZERO that cannot be fast fails with ENOTSUP and changes nothing")
    func fastZeroRefused() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fz-\(UUID().uuidString.prefix(6))").path
        // A device whose zeroing is never fast.
        final class SlowZeroDevice: BlockDevice, @unchecked Sendable {
            let base = MemoryDevice(size: 65536)
            var size: UInt64 { base.size }
            var capabilities: BlockDeviceCapabilities { base.capabilities }
            var blockSizes: BlockSizeConstraints { base.blockSizes }
            func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws { try base.read(into: buffer, at: offset) }
            func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws { try base.write(data, at: offset, fua: fua) }
            func flush() throws {}
            func trim(offset: UInt64, length: UInt64, fua: Bool) throws {}
            func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {
                if fastOnly { throw BlockDeviceError(.notSupported, "slow") }
                try base.writeZeroes(offset: offset, length: length, mayTrim: mayTrim, fastOnly: false, fua: fua)
            }
            func extents(offset: UInt64, length: UInt64) throws -> [Extent] { try base.extents(offset: offset, length: length) }
            func close() throws {}
        }
        _ = file
        let h = try start(device: SlowZeroDevice(), framing: .simple)
        try h.peer.send(NBDRequest(command: .writeZeroes, flags: .fastZero, cookie: 1, offset: 0, length: 4096))
        #expect(try h.peer.simpleReply().header.error == .ENOTSUP)
        try h.peer.send(NBDRequest(command: .writeZeroes, flags: [.noHole], cookie: 2, offset: 0, length: 4096))
        #expect(try h.peer.simpleReply().header.error == .success)
    }

    @Test("a storage failure reaches the client as an errno and a general reason, never the host path in the device's error")
    func storageErrorsKeepHostDetailsOffTheWire() throws {
        let h = try start(device: FailingReads(size: 1 << 20))
        try h.peer.send(NBDRequest(command: .read, cookie: 7, offset: 4096, length: 4096))
        let chunks = try h.peer.chunks()
        let error = try #require(chunks.first { $0.header.type == .error })
        let payload = try ErrorChunkPayload(decoding: error.payload, type: .error)
        #expect(payload.error == .EIO)
        #expect(payload.message == "NBD_CMD_READ at 4096 failed: I/O error", "\(payload.message)")
        #expect(!payload.message.contains(FailingReads.secretPath))
        try h.peer.send(NBDRequest(command: .disconnect, cookie: 8))
        #expect(h.run.wait() == .clientDisconnected)
    }
}

/// A device with a backing chain, to check the `qemu:allocation-depth` context.
private final class LayeredDevice: BlockDevice, @unchecked Sendable {
    let base = MemoryDevice(size: 65536)
    var size: UInt64 { base.size }
    var capabilities: BlockDeviceCapabilities { base.capabilities.union(.allocationDepth) }
    var blockSizes: BlockSizeConstraints { base.blockSizes }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws { try base.read(into: buffer, at: offset) }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws { try base.write(data, at: offset, fua: fua) }
    func flush() throws {}
    func trim(offset: UInt64, length: UInt64, fua: Bool) throws {}
    func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {}
    func extents(offset: UInt64, length: UInt64) throws -> [Extent] { try base.extents(offset: offset, length: length) }
    func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]? {
        // First 16 KiB in this image, next 16 KiB in the backing file, rest unallocated.
        var result: [DepthExtent] = []
        var position = offset
        for (end, depth) in [(UInt64(16384), UInt32(1)), (32768, 2), (65536, 0)] where position < end && position < offset + length {
            let stop = min(end, offset + length)
            result.append(DepthExtent(length: stop - position, depth: depth))
            position = stop
        }
        return result
    }
    func close() throws {}
}

@Suite("Transmission engine: allocation depth")
struct AllocationDepthTests {
    @Test("BLOCK_STATUS with base:allocation and qemu:allocation-depth sends one chunk per context")
    func twoContexts() throws {
        let device = LayeredDevice()
        let (serverFD, clientFD) = try makeSocketPair()
        let export = ExportDescriptor(name: "layered", size: device.size,
                                      transmissionFlags: .derived(from: device.capabilities, writable: true, multiConnAllowed: true),
                                      offersAllocationDepth: true)
        let session = NegotiatedSession(
            export: export, structuredReplies: true, extendedHeaders: false,
            metaContexts: [NBDMetaContext.baseAllocation.contextID: .baseAllocation,
                           NBDMetaContext.allocationDepth.contextID: .allocationDepth],
            clientRequestedBlockSizes: false, transmissionFlags: export.advertisedFlags(structuredOrExtended: true),
            clientFlags: [.fixedNewstyle], tlsActive: false, peerIdentity: nil)
        let stream = SocketStream(fd: serverFD)
        let driver = TransmissionDriver(context: TransmissionContext(session: session, device: device), stream: stream,
                                        logger: Logger(label: "depth"), maxThreads: 2, inFlightLimit: 4, onSendFailure: { _ in })
        let run = Background { let ending = driver.run(); stream.close(); return ending }
        let peer = TestPeer(fd: clientFD)
        try peer.send(NBDRequest(command: .blockStatus, cookie: 1, offset: 8192, length: 40960))
        let chunks = try peer.chunks()
        #expect(chunks.count == 2)
        let payloads = try chunks.map { try BlockStatusChunkPayload(decoding: $0.payload, form: .compact) }
        let depth = payloads.first { $0.contextID == NBDMetaContext.allocationDepth.contextID }
        #expect(depth?.extents == [BlockStatusExtent(length: 8192, flags: 1), BlockStatusExtent(length: 16384, flags: 2),
                                   BlockStatusExtent(length: 16384, flags: 0)])
        let allocation = payloads.first { $0.contextID == NBDMetaContext.baseAllocation.contextID }
        #expect(allocation?.extents == [BlockStatusExtent(length: 40960, flags: 3)])
        try peer.send(NBDRequest(command: .disconnect, cookie: 2))
        #expect(run.wait() == .clientDisconnected)
    }

}

/// A device whose reads fail with an error naming a host path, as file-backed devices do.
private final class FailingReads: BlockDevice, @unchecked Sendable {
    static let secretPath = "/srv/private/tenant-a/disk.img"
    let size: UInt64
    let capabilities: BlockDeviceCapabilities = []
    let blockSizes = BlockSizeConstraints(minimum: 1, preferred: 4096, maximumPayload: 32 << 20)
    init(size: UInt64) { self.size = size }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        throw BlockDeviceError(.io, "\(Self.secretPath): read at \(offset) failed", errno: EIO)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {}
    func flush() throws {}
    func trim(offset: UInt64, length: UInt64, fua: Bool) throws {}
    func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {}
    func extents(offset: UInt64, length: UInt64) throws -> [Extent] { [Extent(length: length, flags: [])] }
    func close() throws {}
}
