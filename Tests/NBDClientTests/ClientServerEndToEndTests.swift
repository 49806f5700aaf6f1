import Testing
import Foundation
import Logging
import BlockDevices
import NBDClient
import NBDProtocol
import NBDServer
import NBDTLS

/// Our client against our server in one process, over a Unix socket, with and without TLS.
@Suite("Client and server in-process", .serialized)
struct ClientServerEndToEndTests {
    /// A running in-process server on a fresh Unix socket.
    final class Harness: @unchecked Sendable {
        let directory: String
        let socket: String
        let server: NBDServer
        let device: MemoryDevice
        let pskFile: String

        init(tlsMode: ServerTLSMode = .off, size: UInt64 = 4 << 20) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-e2e-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            socket = directory + "/s.sock"
            pskFile = directory + "/keys.psk"
            try "alice:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n".write(toFile: pskFile, atomically: true, encoding: .utf8)
            device = MemoryDevice(size: size)
            var configuration = ServerConfiguration(listenAddresses: [.unix(path: socket)],
                                                    exports: [ExportConfiguration(name: "mem", description: "in memory", device: device)])
            if tlsMode != .off {
                configuration.tlsMode = tlsMode
                configuration.tlsProvider = try GnuTLSServerTLSProvider(TLSServerConfiguration(credentials: .psk(keyFile: pskFile)))
            }
            var logger = Logger(label: "e2e")
            logger.logLevel = .critical
            server = try NBDServer(configuration: configuration, logger: logger)
            try server.start()
        }

        var transport: NBDURI.Transport { .unix(path: socket) }

        func pskClient(keyFile: String? = nil) throws -> any ClientTLSProvider {
            try GnuTLSClientTLSProvider(TLSClientConfiguration(credentials: .psk(keyFile: keyFile ?? pskFile, username: "alice")))
        }

        deinit {
            server.shutdown()
            server.waitUntilStopped()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test("plaintext: extended headers, block status and every command round-trip")
    func plaintext() throws {
        let h = try Harness()
        let c = try NBDConnection.connect(h.transport, configuration: NBDClientConfiguration(exportName: "mem"))
        #expect(c.export.replyMode == .extended)
        #expect(c.export.description == "in memory")
        #expect(!c.export.tlsActive)
        let data = [UInt8]((0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 / 3) })
        try data.withUnsafeBytes { try c.write($0, at: 512 << 10, fua: true) }
        var back = [UInt8](repeating: 0, count: 1 << 20)
        try back.withUnsafeMutableBytes { try c.read(into: $0, at: 512 << 10) }
        #expect(back == data)
        try c.perform(.flush)
        try c.perform(.writeZeroes, offset: 0, length: 4 << 20, flags: .noHole)
        try back.withUnsafeMutableBytes { try c.read(into: $0, at: 512 << 10) }
        #expect(back == [UInt8](repeating: 0, count: 1 << 20))
        let reply = try c.perform(.blockStatus, offset: 0, length: 4 << 20)
        guard case .blockStatus(let status) = reply else { Issue.record("no status"); return }
        #expect(status.extentsByContext.count == 1)
        c.close()
    }

    @Test("the simple and structured fallbacks work against our server too")
    func fallbacks() throws {
        let h = try Harness()
        for (extended, structured, mode) in [(false, true, NBDReplyMode.structured), (false, false, .simple)] {
            var config = NBDClientConfiguration(exportName: "mem")
            config.requestExtendedHeaders = extended
            config.requestStructuredReplies = structured
            let c = try NBDConnection.connect(h.transport, configuration: config)
            #expect(c.export.replyMode == mode)
            let block = [UInt8](repeating: 0x42, count: 8192)
            try block.withUnsafeBytes { try c.write($0, at: 4096) }
            var back = [UInt8](repeating: 0, count: 8192)
            try back.withUnsafeMutableBytes { try c.read(into: $0, at: 4096) }
            #expect(back == block)
            c.close()
        }
    }

    @Test("PSK TLS comes up after STARTTLS and carries the whole session")
    func pskTLS() throws {
        let h = try Harness(tlsMode: .require)
        let config = NBDClientConfiguration(exportName: "mem", tlsPolicy: .require, tlsProvider: try h.pskClient())
        let c = try NBDConnection.connect(h.transport, configuration: config)
        #expect(c.export.tlsActive)
        #expect(c.export.replyMode == .extended, "state negotiated inside TLS")
        let block = [UInt8](repeating: 0x17, count: 300_000)
        try block.withUnsafeBytes { try c.write($0, at: 1000) }
        var back = [UInt8](repeating: 0, count: 300_000)
        try back.withUnsafeMutableBytes { try c.read(into: $0, at: 1000) }
        #expect(back == block)
        c.close()
    }

    @Test("a wrong PSK fails with a TLS error")
    func wrongKey() throws {
        let h = try Harness(tlsMode: .require)
        let wrong = h.directory + "/wrong.psk"
        try "alice:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n".write(toFile: wrong, atomically: true, encoding: .utf8)
        let config = NBDClientConfiguration(exportName: "mem", tlsPolicy: .require, tlsProvider: try h.pskClient(keyFile: wrong))
        #expect(throws: NBDClientError.self) { _ = try NBDConnection.connect(h.transport, configuration: config) }
    }

    @Test("a plaintext client meets a TLS-only server and is told TLS is required")
    func serverRequiresTLS() throws {
        let h = try Harness(tlsMode: .require)
        do {
            _ = try NBDConnection.connect(h.transport, configuration: NBDClientConfiguration(exportName: "mem"))
            Issue.record("plaintext client entered a TLS-only server")
        } catch let error as NBDClientError {
            #expect(error.code == .tls)
            #expect(error.message.contains("requires TLS"), "\(error)")
        }
    }

    @Test("a TLS-requiring client refuses a plaintext server before naming the export")
    func clientRequiresTLS() throws {
        let h = try Harness(tlsMode: .off)
        let config = NBDClientConfiguration(exportName: "mem", tlsPolicy: .require, tlsProvider: try h.pskClient())
        do {
            _ = try NBDConnection.connect(h.transport, configuration: config)
            Issue.record("TLS-requiring client accepted plaintext")
        } catch let error as NBDClientError {
            #expect(error.code == .tls)
        }
        // allow falls back to plaintext.
        let allow = NBDClientConfiguration(exportName: "mem", tlsPolicy: .allow, tlsProvider: try h.pskClient())
        let c = try NBDConnection.connect(h.transport, configuration: allow)
        #expect(!c.export.tlsActive)
        c.close()
    }

    @Test("listing through the library returns the export with its description")
    func listing() throws {
        let h = try Harness()
        let (exports, tls) = try NBDConnection.listExports(try NBDURI("nbd+unix:///?socket=\(h.socket)"))
        #expect(!tls)
        #expect(exports.map(\.name) == ["mem"])
        #expect(exports.first?.info?.size == 4 << 20)
        #expect(exports.first?.listDescription == "in memory" || exports.first?.info?.description == "in memory")
    }

    /// Regression: the reader of a closed connection once closed its descriptor late, or read
    /// from a number the kernel had already given to the next connection, stealing its greeting.
    @Test("connections opened right after others close always get their own greeting")
    func rapidReconnects() throws {
        let h = try Harness()
        var config = NBDClientConfiguration(exportName: "mem")
        config.handshakeTimeout = 5
        for _ in 0..<150 {
            let c = try NBDConnection.connect(h.transport, configuration: config)
            var byte = [UInt8](repeating: 1, count: 1)
            try byte.withUnsafeMutableBytes { try c.read(into: $0, at: 0) }
            c.close()
        }
    }

    @Test("close() from inside a completion handler returns instead of waiting for itself")
    func closeFromCompletion() throws {
        let h = try Harness()
        let c = try NBDConnection.connect(h.transport, configuration: NBDClientConfiguration(exportName: "mem"))
        let done = DispatchSemaphore(value: 0)
        c.submit(.flush) { _ in
            c.close()
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(c.failure != nil)
    }
}
