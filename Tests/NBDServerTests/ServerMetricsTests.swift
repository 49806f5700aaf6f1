import BlockDevices
import CoreMetrics
import Foundation
import Logging
import NBDProtocol
import NBDTLS
import Testing
@testable import NBDServer

/// What the server reports through swift-metrics, read back from a Prometheus registry after
/// driving the engine with a hand-written peer.
@Suite("Server metrics")
struct ServerMetricsTests {
    /// The transmission engine over a socketpair with metrics for export "m".
    func startDriver(_ probe: MetricsProbe, device: any BlockDevice = MemoryDevice(size: 1 << 20, chunkSize: 4096),
                     writable: Bool = true) throws -> (TestPeer, Background<TransmissionDriver.Ending>) {
        let (serverFD, clientFD) = try makeSocketPair()
        let export = ExportDescriptor(name: "m", size: device.size,
                                      transmissionFlags: .derived(from: device.capabilities, writable: writable, multiConnAllowed: true))
        let session = NegotiatedSession(
            export: export, structuredReplies: false, extendedHeaders: false, metaContexts: [:], clientRequestedBlockSizes: false,
            transmissionFlags: export.advertisedFlags(structuredOrExtended: false), clientFlags: [.fixedNewstyle, .noZeroes],
            tlsActive: false, peerIdentity: nil)
        let stream = SocketStream(fd: serverFD)
        let driver = TransmissionDriver(context: TransmissionContext(session: session, device: device), stream: stream,
                                        logger: Logger(label: "metrics"), maxThreads: 2, inFlightLimit: 8,
                                        metrics: ExportMetrics(exportName: "m", factory: probe.factory), onSendFailure: { _ in })
        return (TestPeer(fd: clientFD), Background { let ending = driver.run(); stream.close(); return ending })
    }

    @Test("requests are counted by command and result, bytes by direction, latencies per command")
    func transmissionCounters() throws {
        let probe = MetricsProbe()
        let (peer, run) = try startDriver(probe)
        let data = [UInt8](repeating: 0x5a, count: 5000)
        try peer.send(NBDRequest(command: .write, cookie: 1, offset: 0, length: 5000), payload: data)
        try peer.send(NBDRequest(command: .write, flags: .fua, cookie: 2, offset: 8192, length: 4096), payload: Array(data[0..<4096]))
        try peer.send(NBDRequest(command: .read, cookie: 3, offset: 0, length: 3000))
        try peer.send(NBDRequest(command: .flush, cookie: 4))
        try peer.send(NBDRequest(command: .trim, cookie: 5, offset: 0, length: 4096))
        // Refused by the validator: beyond the end (EINVAL), and an unknown command.
        try peer.send(NBDRequest(command: .read, cookie: 6, offset: 1 << 20, length: 512))
        try peer.send(NBDRequest(command: NBDCommand(rawValue: 42), cookie: 7))
        for cookie: UInt64 in 1...7 {
            _ = cookie
            let reply = try peer.simpleReply()
            if reply.header.cookie == 3 { _ = try peer.read(3000) }
        }
        try peer.send(NBDRequest(command: .disconnect, cookie: 8))
        #expect(run.wait() == .clientDisconnected)

        let ok = { (command: String) in probe.value(NBDServerMetrics.requests, ["export": "m", "command": command, "result": "ok"]) }
        #expect(ok("write") == 2)
        #expect(ok("read") == 1)
        #expect(ok("flush") == 1)
        #expect(ok("trim") == 1)
        #expect(ok("block_status") == 0)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "read", "result": "EINVAL"]) == 1)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "other", "result": "EINVAL"]) == 1)
        #expect(probe.value(NBDServerMetrics.writtenBytes, ["export": "m"]) == 9096)
        #expect(probe.value(NBDServerMetrics.readBytes, ["export": "m"]) == 3000)
        #expect(probe.value(NBDServerMetrics.requestsInFlight, ["export": "m"]) == 0)
        let count = { (command: String) in probe.value(NBDServerMetrics.requestDuration + "_count", ["export": "m", "command": command]) }
        #expect(count("read") == 1)
        #expect(count("write") == 2)
        #expect(count("flush") == 1)
        #expect(count("other") == 1)  // the trim; refused requests were never executed
        // Every latency lands in some bucket up to 10 s, and the buckets are the configured ones.
        #expect(probe.value(NBDServerMetrics.requestDuration + "_bucket", ["export": "m", "command": "write", "le": "10.0"]) == 2)
        #expect(probe.exposition.contains("le=\"1e-05\""))
    }

    @Test("storage failures are counted under the errno the client was sent")
    func storageFailures() throws {
        let probe = MetricsProbe()
        let (peer, run) = try startDriver(probe, device: FailingDevice())
        try peer.send(NBDRequest(command: .read, cookie: 1, offset: 0, length: 4096))
        try peer.send(NBDRequest(command: .write, cookie: 2, offset: 0, length: 512), payload: [UInt8](repeating: 1, count: 512))
        try peer.send(NBDRequest(command: .flush, cookie: 3))
        var errors: [UInt64: NBDErrno] = [:]
        for _ in 0..<3 {
            let header = try peer.simpleReply().header
            errors[header.cookie] = header.error
        }
        try peer.send(NBDRequest(command: .disconnect, cookie: 4))
        #expect(run.wait() == .clientDisconnected)
        #expect(errors == [1: .EIO, 2: .ENOSPC, 3: .EPERM])
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "read", "result": "EIO"]) == 1)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "write", "result": "ENOSPC"]) == 1)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "flush", "result": "EPERM"]) == 1)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "read", "result": "ok"]) == 0)
        #expect(probe.value(NBDServerMetrics.readBytes, ["export": "m"]) == 0)
        #expect(probe.value(NBDServerMetrics.requestDuration + "_count", ["export": "m", "command": "flush"]) == 1)
    }

    @Test("a read-only export's refused write is counted as EPERM")
    func readOnlyRefusal() throws {
        let probe = MetricsProbe()
        let (peer, run) = try startDriver(probe, writable: false)
        try peer.send(NBDRequest(command: .write, cookie: 1, offset: 0, length: 512), payload: [UInt8](repeating: 1, count: 512))
        #expect(try peer.simpleReply().header.error == .EPERM)
        try peer.send(NBDRequest(command: .disconnect, cookie: 2))
        #expect(run.wait() == .clientDisconnected)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "m", "command": "write", "result": "EPERM"]) == 1)
        #expect(probe.value(NBDServerMetrics.writtenBytes, ["export": "m"]) == 0)
    }

    // MARK: Whole server

    func startServer(_ probe: MetricsProbe, exports: [ExportConfiguration] = [ExportConfiguration(name: "mem", device: MemoryDevice(size: 1 << 20))],
                     maxConnections: Int = 100, handshakeTimeout: Double = 10, tlsMode: ServerTLSMode = .off,
                     tlsProvider: (any ServerTLSProvider)? = nil) throws -> NBDServer {
        var logger = Logger(label: "metrics-server")
        logger.logLevel = .critical
        let server = try NBDServer(configuration: ServerConfiguration(
            listenAddresses: [.tcp(host: "127.0.0.1", port: 0)], exports: exports, maxConnections: maxConnections,
            handshakeTimeout: handshakeTimeout, tlsMode: tlsMode, tlsProvider: tlsProvider, shutdownGracePeriod: 10,
            metricsFactory: probe.factory), logger: logger)
        try server.start()
        return server
    }

    @Test("connections are counted by phase and transport as they negotiate, transmit and leave")
    func connectionGauges() throws {
        let probe = MetricsProbe()
        let server = try startServer(probe)
        defer { server.shutdown(); server.waitUntilStopped() }
        let gauge = { (phase: String) in probe.value(NBDServerMetrics.connections, ["phase": phase, "transport": "tcp"]) }
        let negotiating = try connectLoopback(port: server.boundPorts[0])
        _ = try negotiating.read(18)
        #expect(probe.eventually { gauge("negotiating") == 1 })
        let transmitting = try connectLoopback(port: server.boundPorts[0])
        try transmitting.negotiate(export: "mem")
        #expect(probe.eventually { gauge("negotiating") == 1 && gauge("transmission") == 1 })
        try transmitting.send(NBDRequest(command: .read, cookie: 1, offset: 0, length: 4096))
        _ = try transmitting.chunks()
        try transmitting.send(NBDRequest(command: .disconnect, cookie: 2))
        negotiating.close()
        #expect(probe.eventually { gauge("negotiating") == 0 && gauge("transmission") == 0 })
        #expect(probe.value(NBDServerMetrics.connectionsAccepted, ["transport": "tcp"]) == 2)
        #expect(probe.value(NBDServerMetrics.connections, ["phase": "transmission", "transport": "unix"]) == 0)
        #expect(probe.value(NBDServerMetrics.requests, ["export": "mem", "command": "read", "result": "ok"]) == 1)
        #expect(probe.value(NBDServerMetrics.readBytes, ["export": "mem"]) == 4096)
    }

    @Test("refusals: over the connection limit, and past the handshake deadline (counted once)")
    func refusals() throws {
        let probe = MetricsProbe()
        let server = try startServer(probe, maxConnections: 1, handshakeTimeout: 0.4)
        defer { server.shutdown(); server.waitUntilStopped() }
        let first = try connectLoopback(port: server.boundPorts[0])
        _ = try first.read(18)
        let second = try connectLoopback(port: server.boundPorts[0])
        #expect(second.isClosedByServer())
        #expect(first.isClosedByServer())  // the deadline
        #expect(probe.eventually { probe.value(NBDServerMetrics.connectionsRefused, ["reason": "handshake_timeout"]) == 1 })
        usleep(600_000)  // the watchdog keeps running: it must not count the same client again
        #expect(probe.value(NBDServerMetrics.connectionsRefused, ["reason": "handshake_timeout"]) == 1)
        #expect(probe.value(NBDServerMetrics.connectionsRefused, ["reason": "limit"]) == 1)
        #expect(probe.value(NBDServerMetrics.connectionsRefused, ["reason": "shutting_down"]) == 0)
    }

    @Test("TLS outcomes: the provider's refusal reason, DN refusals, plaintext clients, reloads")
    func tlsOutcomes() throws {
        let probe = MetricsProbe()
        let provider = ScriptedTLSProvider()
        let server = try startServer(probe, exports: [ExportConfiguration(name: "mem", device: MemoryDevice(size: 1 << 20))],
                                     tlsMode: .require, tlsProvider: provider)
        defer { server.shutdown(); server.waitUntilStopped() }
        let refused = { (reason: String) in probe.value(NBDServerMetrics.tlsHandshakes, ["result": "refused", "reason": reason]) }

        // A plaintext client: two options refused for lack of TLS, counted once.
        let plain = try connectLoopback(port: server.boundPorts[0])
        try plain.greet()
        #expect(try plain.option(.structuredReply).last?.0.replyType == .errTLSRequired)
        #expect(try plain.option(.go, try InfoRequestPayload(exportName: "mem").encoded()).last?.0.replyType == .errTLSRequired)
        _ = try plain.option(.abort)
        #expect(plain.isClosedByServer())
        #expect(probe.eventually { refused("plaintext_to_tls_only_export") == 1 })

        // Handshakes the provider fails, with and without a named reason.
        for failure in [TLSError(.untrustedPeer, "x", refusalReason: .unknownCA), TLSError(.handshake, "y")] {
            provider.next = .failure(failure)
            let client = try connectLoopback(port: server.boundPorts[0])
            try client.greet()
            #expect(try client.option(.startTLS).last?.0.replyType == .ack)
            #expect(client.isClosedByServer())
        }
        #expect(probe.eventually { refused("unknown_ca") == 1 && refused("other") == 1 })
        #expect(refused("plaintext_to_tls_only_export") == 1)  // STARTTLS clients are not plaintext refusals

        // Authenticated but not authorised.
        provider.next = .refusal("DN not on the list")
        let unauthorised = try connectLoopback(port: server.boundPorts[0])
        try unauthorised.greet()
        #expect(try unauthorised.option(.startTLS).last?.0.replyType == .ack)
        #expect(probe.eventually { refused("dn_not_authorized") == 1 })
        #expect(probe.value(NBDServerMetrics.tlsHandshakes, ["result": "ok", "reason": "none"]) == 0)

        provider.reloadFails = false
        server.reloadCredentials()
        provider.reloadFails = true
        server.reloadCredentials()
        server.reloadCredentials()
        #expect(probe.value(NBDServerMetrics.credentialReloads, ["result": "ok"]) == 1)
        #expect(probe.value(NBDServerMetrics.credentialReloads, ["result": "failed"]) == 2)
        #expect(!probe.exposition.contains("reason=\"DN not on the list\""))
    }

    @Test("without a metrics backend the server creates no export handles")
    func disabled() throws {
        let metrics = ServerMetrics(factory: NOOPMetricsHandler.instance, exportNames: ["a"])
        #expect(!metrics.enabled)
        #expect(metrics.export(named: "a") == nil)
        let enabled = ServerMetrics(factory: MetricsProbe().factory, exportNames: ["a"])
        #expect(enabled.export(named: "a") != nil)
    }
}

/// A device whose every operation fails, with a different storage error per command.
private final class FailingDevice: BlockDevice, @unchecked Sendable {
    let size: UInt64 = 1 << 20
    let capabilities: BlockDeviceCapabilities = [.flush]
    let blockSizes = BlockSizeConstraints(minimum: 1, preferred: 4096, maximumPayload: 32 << 20)
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        throw BlockDeviceError(.io, "read failed")
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        throw BlockDeviceError(.noSpace, "disk full")
    }
    func flush() throws { throw BlockDeviceError(.readOnly, "read-only file system") }
    func trim(offset: UInt64, length: UInt64, fua: Bool) throws {}
    func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {}
    func extents(offset: UInt64, length: UInt64) throws -> [Extent] { [Extent(length: length, flags: [])] }
    func close() throws {}
}

/// A TLS seam that does no TLS: each STARTTLS gets the outcome the test scripted.
private final class ScriptedTLSProvider: ServerTLSProvider, @unchecked Sendable {
    enum Next { case failure(TLSError), refusal(String) }
    private let lock = NSLock()
    private var _next: Next = .failure(TLSError(.handshake, "unscripted"))
    private var _reloadFails = false
    var next: Next {
        get { lock.withLock { _next } }
        set { lock.withLock { _next = newValue } }
    }
    var reloadFails: Bool {
        get { lock.withLock { _reloadFails } }
        set { lock.withLock { _reloadFails = newValue } }
    }

    func acceptHandshake(on socket: SocketStream, peerAddress: String) throws -> ServerTLSOutcome {
        switch next {
        case let .failure(error):
            socket.close()  // as the real provider does after its alert
            throw error
        case let .refusal(text):
            return ServerTLSOutcome(stream: socket, peerIdentity: "CN=someone", refusal: text)
        }
    }

    func reloadCredentials() throws {
        if reloadFails { throw TLSError(.credentials, "unreadable") }
    }
}
