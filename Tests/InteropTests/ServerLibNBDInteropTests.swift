import CLibNBD
import Foundation
import Testing

/// libnbd in-process (option mode, aio) against `swiftnbd serve`.
@Suite("Server ↔ libnbd in-process", .serialized, .noLeftoverProcesses)
struct ServerLibNBDInteropTests {
    static var libnbdPresent: Bool { Peers.available("nbdinfo") }

    func twoExportServer(_ dir: TempDir) throws -> SwiftNBDServe {
        try makeSparseFile(dir.file("a.img"), size: 4 << 20)
        try makeSparseFile(dir.file("b.img"), size: 8 << 20)
        return try SwiftNBDServe(["--export", "alpha=\(dir.file("a.img")),desc=Alpha disk",
                                  "--export", "beta=\(dir.file("b.img")),ro,desc=Beta disk"])
    }

    @Test("option mode: LIST, INFO on each export, an unknown export refused, then GO", .enabled(if: libnbdPresent))
    func optionMode() throws {
        let dir = TempDir()
        let server = try twoExportServer(dir)
        defer { server.stop() }
        let h = try ServerLibNBDHandle()
        try h.check("set_opt_mode", nbd_set_opt_mode(h.handle, true))
        try h.check("set_full_info", nbd_set_full_info(h.handle, true))
        try h.check("connect", nbd_connect_uri(h.handle, server.uri()))
        let exports = try h.listExports()
        #expect(exports.map(\.name) == ["alpha", "beta"], "\(server.log)")
        #expect(exports.map(\.description) == ["Alpha disk", "Beta disk"])

        try h.check("set_export_name", nbd_set_export_name(h.handle, "beta"))
        try h.check("opt_info beta", nbd_opt_info(h.handle))
        #expect(nbd_get_size(h.handle) == 8 << 20)
        #expect(nbd_is_read_only(h.handle) == 1)
        #expect(nbd_get_export_description(h.handle).map { s in defer { free(s) }; return String(cString: s) } == "Beta disk")

        try h.check("set_export_name", nbd_set_export_name(h.handle, "missing"))
        #expect(nbd_opt_info(h.handle) == -1)
        // Still negotiating after a refusal.
        try h.check("set_export_name", nbd_set_export_name(h.handle, "alpha"))
        try h.check("opt_info alpha", nbd_opt_info(h.handle))
        #expect(nbd_get_size(h.handle) == 4 << 20)
        #expect(nbd_is_read_only(h.handle) == 0)

        try h.check("add_meta_context", nbd_add_meta_context(h.handle, "base:allocation"))
        try h.check("opt_go", nbd_opt_go(h.handle))
        #expect(nbd_aio_is_ready(h.handle) == 1)
        #expect(nbd_can_meta_context(h.handle, "base:allocation") == 1)
        let runs = try h.blockStatus(count: 4 << 20, offset: 0)
        #expect(runs.count == 1 && runs[0].0 == 4 << 20 && runs[0].1 == 3, "\(runs)")
        try h.check("shutdown", nbd_shutdown(h.handle, 0))
    }

    @Test("option mode: LIST_META_CONTEXT offers base:allocation, unknown namespaces are ignored, ABORT ends cleanly",
          .enabled(if: libnbdPresent))
    func metaContextsAndAbort() throws {
        let dir = TempDir()
        let server = try twoExportServer(dir)
        defer { server.stop() }
        let h = try ServerLibNBDHandle()
        try h.check("set_opt_mode", nbd_set_opt_mode(h.handle, true))
        try h.check("connect", nbd_connect_uri(h.handle, server.uri("alpha")))
        #expect(try h.listMetaContexts() == ["base:allocation"])
        try h.check("add x-unknown", nbd_add_meta_context(h.handle, "x-unknown:thing"))
        try h.check("add base", nbd_add_meta_context(h.handle, "base:allocation"))
        #expect(try h.listMetaContexts() == ["base:allocation"])
        try h.check("opt_abort", nbd_opt_abort(h.handle))
        #expect(nbd_aio_is_closed(h.handle) == 1 || nbd_aio_is_dead(h.handle) == 1)
        // The server is unaffected.
        let again = try ServerLibNBDHandle()
        try again.check("connect", nbd_connect_uri(again.handle, server.uri("alpha")))
        #expect(nbd_get_size(again.handle) == 4 << 20)
    }

    @Test("a client that refuses structured replies gets simple replies that still carry the data",
          .enabled(if: libnbdPresent))
    func simpleReplies() throws {
        let dir = TempDir()
        try makePatternFile(dir.file("disk.img"), size: 1 << 20, seed: 9)
        let server = try SwiftNBDServe([dir.file("disk.img"), "--read-only"])
        defer { server.stop() }
        let h = try ServerLibNBDHandle()
        try h.check("no SR", nbd_set_request_structured_replies(h.handle, false))
        try h.check("connect", nbd_connect_uri(h.handle, server.uri()))
        #expect(nbd_get_structured_replies_negotiated(h.handle) == 0)
        #expect(nbd_can_df(h.handle) == 0)
        var buffer = [UInt8](repeating: 0, count: 65536)
        try h.check("pread", buffer.withUnsafeMutableBytes { nbd_pread(h.handle, $0.baseAddress, $0.count, 4096, 0) })
        #expect(buffer == Array(try fileBytes(dir.file("disk.img"))[4096..<(4096 + 65536)]))
    }

    @Test("aio: 128 writes and reads in flight on one connection all complete and match",
          .enabled(if: libnbdPresent))
    func aioManyInFlight() throws {
        let dir = TempDir()
        try makeSparseFile(dir.file("disk.img"), size: 16 << 20)
        let server = try SwiftNBDServe([dir.file("disk.img")])
        defer { server.stop() }
        let h = try ServerLibNBDHandle()
        try h.check("connect", nbd_connect_uri(h.handle, server.uri()))
        let blocks = 128, size = 32768
        var source = [UInt8](repeating: 0, count: blocks * size)
        for i in 0..<source.count { source[i] = UInt8(truncatingIfNeeded: i &* 7 &+ i >> 15) }
        var cookies: [Int64] = []
        var peak: Int32 = 0
        try source.withUnsafeBytes { raw in
            for i in 0..<blocks {
                cookies.append(try h.check("aio_pwrite", nbd_aio_pwrite(h.handle, raw.baseAddress! + i * size, size,
                                                                        UInt64(i * size), nbd_completion_callback(), 0)))
                peak = max(peak, nbd_aio_in_flight(h.handle))
            }
            try h.drain()
        }
        for cookie in cookies { #expect(nbd_aio_command_completed(h.handle, UInt64(cookie)) == 1) }
        var back = [UInt8](repeating: 0, count: blocks * size)
        cookies = []
        try back.withUnsafeMutableBytes { raw in
            for i in 0..<blocks {
                cookies.append(try h.check("aio_pread", nbd_aio_pread(h.handle, raw.baseAddress! + i * size, size,
                                                                      UInt64(i * size), nbd_completion_callback(), 0)))
            }
            try h.drain()
        }
        for cookie in cookies { #expect(nbd_aio_command_completed(h.handle, UInt64(cookie)) == 1) }
        #expect(back == source)
        #expect(peak > 1)
        try h.check("flush", nbd_flush(h.handle, 0))
    }
}
