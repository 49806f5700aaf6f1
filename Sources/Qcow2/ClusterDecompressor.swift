import BlockDevices
import CZlib
import CZstd

/// Inflates one compressed cluster. QEMU's streams are raw deflate (no zlib header) or plain
/// zstd frames; either way exactly one cluster of output is expected and any input left over
/// (sector padding, neighbouring streams) is ignored.
enum ClusterDecompressor {
    static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer,
                           type: Qcow2CompressionType) throws {
        switch type {
        case .deflate: try inflateRaw(input, into: output)
        case .zstd: try zstdDecompress(input, into: output)
        }
    }

    private static func failure(_ why: String) -> BlockDeviceError {
        BlockDeviceError(.io, "qcow2: cannot decompress cluster: \(why)")
    }

    static func inflateRaw(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        var stream = z_stream()
        // Negative window bits = raw deflate; 15 accepts any window a writer may have used.
        guard inflateInit2_(&stream, -15, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw failure("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(input.count)
        stream.next_out = output.baseAddress?.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(output.count)
        let result = inflate(&stream, Z_FINISH)
        guard result == Z_STREAM_END || result == Z_BUF_ERROR || result == Z_OK else {
            throw failure("deflate stream is invalid (zlib error \(result))")
        }
        guard stream.avail_out == 0 else { throw failure("deflate stream ends before a full cluster") }
    }

    static func zstdDecompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        let context = ZstdDecompressionContext()
        guard let ctx = context.pointer else { throw failure("cannot create a zstd context") }
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: 0)
        // Each call makes progress or fails; bound the loop anyway.
        var rounds = 0
        while outBuffer.pos < outBuffer.size {
            rounds += 1
            guard rounds < 1 << 20 else { throw failure("zstd made no progress") }
            let before = (inBuffer.pos, outBuffer.pos)
            let ret = ZSTD_decompressStream(ctx, &outBuffer, &inBuffer)
            if ZSTD_isError(ret) != 0 {
                throw failure("zstd: \(String(cString: ZSTD_getErrorName(ret)))")
            }
            if outBuffer.pos == outBuffer.size { break }
            if inBuffer.pos == inBuffer.size || before == (inBuffer.pos, outBuffer.pos) {
                throw failure("zstd stream ends before a full cluster")
            }
        }
    }
}

/// Owner of one `ZSTD_DCtx`.
final class ZstdDecompressionContext: @unchecked Sendable {
    let pointer: OpaquePointer?
    init() { pointer = ZSTD_createDCtx() }
    deinit { if let pointer { ZSTD_freeDCtx(pointer) } }
}
