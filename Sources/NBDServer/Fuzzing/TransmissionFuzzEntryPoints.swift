import BlockDevices
import Logging
import NBDProtocol
import NBDTLS

/// Entry point shared by the libFuzzer target Fuzz/transmission and its regression tests:
/// arbitrary client bytes through the real transmission engine (`TransmissionDriver`: request
/// reader, `RequestValidator`, reply planning and `ReplySender`, worker threads) over a 1 MiB
/// `MemoryDevice`, the stream being an in-memory stand-in for the socket.
package enum TransmissionFuzzEntryPoints {
    /// Byte 0 chooses the session: bits 0–1 the framing (simple/structured/extended/extended),
    /// bit 2 read-only, bit 3 no metadata contexts, bit 4 the client asked for block sizes
    /// (512-byte minimum enforced), bit 5 a 64 KiB maximum payload. The rest is the request stream.
    package static func requestStream(_ bytes: [UInt8]) {
        guard let selector = bytes.first else { return }
        let framing = Int(selector & 3)
        let writable = selector & 4 == 0
        let device = MemoryDevice(size: 1 << 20, chunkSize: 4096, readOnly: !writable)
        let export = ExportDescriptor(
            name: "fuzz", size: device.size,
            transmissionFlags: .derived(from: device.capabilities, writable: writable, multiConnAllowed: true),
            blockSizes: NBDBlockSizes(minimum: selector & 0x10 != 0 ? 512 : 1, preferred: 4096,
                                      maximumPayload: selector & 0x20 != 0 ? 64 << 10 : 1 << 25))
        let contexts: [UInt32: NBDMetaContext] = framing == 0 || selector & 8 != 0 ? [:] : [
            NBDMetaContext.baseAllocation.contextID: .baseAllocation,
            NBDMetaContext.allocationDepth.contextID: .allocationDepth,
        ]
        let session = NegotiatedSession(
            export: export, structuredReplies: framing != 0, extendedHeaders: framing >= 2, metaContexts: contexts,
            clientRequestedBlockSizes: selector & 0x10 != 0,
            transmissionFlags: export.advertisedFlags(structuredOrExtended: framing != 0),
            clientFlags: [.fixedNewstyle, .noZeroes], tlsActive: false, peerIdentity: nil)
        let stream = InMemoryStream(Array(bytes.dropFirst()))
        let driver = TransmissionDriver(context: TransmissionContext(session: session, device: device), stream: stream,
                                        logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }),
                                        maxThreads: 2, inFlightLimit: 4, onSendFailure: { _ in })
        _ = driver.run()
        try? device.close()
    }
}

/// A socket stand-in: reads come from a byte array (in pieces of at most 4 KiB, as a socket
/// would deliver them), writes are counted and dropped.
final class InMemoryStream: ByteStream, @unchecked Sendable {
    private let bytes: [UInt8]
    private var position = 0
    private let lock = ServerMutex()
    private(set) var written = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        lock.withLock {
            let count = min(buffer.count, bytes.count - position, 4096)
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[position ..< position + count]))
            }
            position += count
            return count
        }
    }

    func write(_ parts: [UnsafeRawBufferPointer]) throws {
        lock.withLock { written += parts.reduce(0) { $0 + $1.count } }
    }

    func close() {}
}
