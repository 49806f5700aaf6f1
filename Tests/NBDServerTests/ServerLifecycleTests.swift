import BlockDevices
import Foundation
import NBDProtocol
import Testing
@testable import NBDServer

/// The whole engine in-process on loopback: negotiation, limits, shutdown.
@Suite("Server lifecycle", .serialized)
struct ServerLifecycleTests {
    func memoryExport(_ name: String = "mem", description: String? = nil) -> ExportConfiguration {
        ExportConfiguration(name: name, description: description, device: MemoryDevice(size: 1 << 20))
    }

    @Test("a client that stays idle in the handshake is dropped after the timeout; others are served")
    func handshakeTimeout() throws {
        let server = try startServer(exports: [memoryExport()], handshakeTimeout: 0.5)
        defer { server.shutdown(); server.waitUntilStopped() }
        let idle = try connectLoopback(port: server.boundPorts[0])
        _ = try idle.read(18)
        #expect(idle.isClosedByServer())
        let good = try connectLoopback(port: server.boundPorts[0])
        #expect(try good.negotiate(export: "mem") == 1 << 20)
        // In transmission the deadline no longer applies.
        usleep(700_000)
        try good.send(NBDRequest(command: .read, cookie: 7, offset: 0, length: 512))
        #expect(try good.chunks().last?.header.cookie == 7)
    }

    @Test("connections beyond max-connections are closed at once while the admitted ones work")
    func maxConnections() throws {
        let server = try startServer(exports: [memoryExport()], maxConnections: 2)
        defer { server.shutdown(); server.waitUntilStopped() }
        let port = server.boundPorts[0]
        let first = try connectLoopback(port: port)
        let second = try connectLoopback(port: port)
        _ = try first.read(18)
        _ = try second.read(18)
        let third = try connectLoopback(port: port)
        #expect(third.isClosedByServer())
        try first.send([0, 0, 0, 3])
        let replies = try first.option(.list)
        #expect(replies.last?.0.replyType == .ack)
        second.close()
        // Once a slot is free a new client gets in (the server notices the close asynchronously).
        var admitted = false
        for _ in 0..<50 where !admitted {
            usleep(50_000)
            let next = try connectLoopback(port: port)
            admitted = (try? next.read(18)) != nil
        }
        #expect(admitted)
    }

    @Test("a wrong option magic closes that connection only")
    func badOptionMagic() throws {
        let server = try startServer(exports: [memoryExport()])
        defer { server.shutdown(); server.waitUntilStopped() }
        let bad = try connectLoopback(port: server.boundPorts[0])
        try bad.greet()
        try bad.send(Array("NOTANOPT".utf8) + [0, 0, 0, 3, 0, 0, 0, 0])
        #expect(bad.isClosedByServer())
        let good = try connectLoopback(port: server.boundPorts[0])
        #expect(try good.negotiate() == 1 << 20)
    }

    @Test("disconnecting at every byte of the handshake never takes the server down")
    func abortAtEveryByte() throws {
        let server = try startServer(exports: [memoryExport()])
        defer { server.shutdown(); server.waitUntilStopped() }
        let go = try OptionRequest(option: .go, payload: try InfoRequestPayload(exportName: "mem").encoded()).encoded()
        let script: [UInt8] = [0, 0, 0, 3] + go
        for cut in 0..<script.count {
            let peer = try connectLoopback(port: server.boundPorts[0])
            _ = try peer.read(18)
            try peer.send(Array(script.prefix(cut)))
            peer.close()
        }
        let good = try connectLoopback(port: server.boundPorts[0])
        #expect(try good.negotiate(export: "mem") == 1 << 20)
    }

    @Test("LIST shows every export with its description, and an unknown name gets ERR_UNKNOWN")
    func listAndUnknown() throws {
        let server = try startServer(exports: [memoryExport("a", description: "first disk"), memoryExport("b", description: "second")])
        defer { server.shutdown(); server.waitUntilStopped() }
        let peer = try connectLoopback(port: server.boundPorts[0])
        try peer.greet()
        let listed = try peer.option(.list).filter { $0.0.replyType == .server }.map { try ServerReplyPayload(decoding: $0.1) }
        #expect(listed.map(\.exportName) == ["a", "b"])
        #expect(listed.map(\.description) == ["first disk", "second"])
        let unknown = try peer.option(.go, try InfoRequestPayload(exportName: "nope").encoded())
        #expect(unknown.last?.0.replyType == .errUnknown)
        // The client may go on negotiating after a failed GO.
        let ok = try peer.option(.go, try InfoRequestPayload(exportName: "b").encoded())
        #expect(ok.last?.0.replyType == .ack)
    }

    @Test("graceful shutdown answers the writes it read, and every acknowledged write is on disk")
    func shutdownKeepsAcknowledgedWrites() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shutdown-\(UUID().uuidString.prefix(6)).img").path
        _ = FileManager.default.createFile(atPath: path, contents: Data(count: 4 << 20))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let device = try RawFileDevice(path: path, readOnly: false)
        let server = try startServer(exports: [ExportConfiguration(name: "disk", device: device)])
        let peer = try connectLoopback(port: server.boundPorts[0])
        try peer.negotiate(export: "disk")
        func write(_ i: Int) throws {
            try peer.send(NBDRequest(command: .write, cookie: UInt64(i), offset: UInt64(i) * 65536, length: 65536),
                          payload: [UInt8](repeating: UInt8(i + 1), count: 65536))
        }
        // One write answered before the shutdown, so the check below never depends on how
        // far the server got reading the rest (it may read none of them under load).
        var acknowledged: [Int] = []
        try write(0)
        let first = try peer.simpleReply()
        if first.header.error == .success { acknowledged.append(Int(first.header.cookie)) }
        for i in 1..<32 { try write(i) }
        server.shutdown()
        while let reply = try? peer.simpleReply() {
            if reply.header.error == .success { acknowledged.append(Int(reply.header.cookie)) }
        }
        let stopped = Background { server.waitUntilStopped(); return true }
        #expect(stopped.wait() == true)
        let contents = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        for i in acknowledged {
            #expect(contents[i * 65536..<(i + 1) * 65536].allSatisfy { $0 == UInt8(i + 1) }, "acknowledged write \(i) lost")
        }
        #expect(!acknowledged.isEmpty)
    }

    @Test("with exit-on-disconnect the server stops when its last writable client leaves")
    func exitOnDisconnect() throws {
        let server = try startServer(exports: [memoryExport()], exitOnDisconnect: true)
        // A client that never reaches transmission does not count.
        let lister = try connectLoopback(port: server.boundPorts[0])
        try lister.greet()
        _ = try lister.option(.abort)
        let peer = try connectLoopback(port: server.boundPorts[0])
        try peer.negotiate()
        try peer.send(NBDRequest(command: .disconnect, cookie: 1))
        let stopped = Background { server.waitUntilStopped(); return true }
        #expect(stopped.wait() == true)
    }

    @Test("a Unix socket listener serves clients and its file is removed on shutdown")
    func unixSocket() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-\(UUID().uuidString.prefix(6)).sock").path
        let server = try NBDServer(configuration: ServerConfiguration(listenAddresses: [.unix(path: path)], exports: [memoryExport()]),
                                   logger: .init(label: "unix-test"))
        try server.start()
        #expect(server.boundAddresses == ["unix:\(path)"])
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        #expect(connected)
        let peer = TestPeer(fd: fd)
        #expect(try peer.negotiate() == 1 << 20)
        peer.close()
        server.shutdown()
        server.waitUntilStopped()
        #expect(!FileManager.default.fileExists(atPath: path))
    }

    @Test("a stopped server, its connection registry and its connections are freed (no watchdog retain cycle)")
    func stoppedServerIsFreed() throws {
        weak var weakServer: NBDServer?
        weak var weakRegistry: ConnectionRegistry?
        try {
            let server = try startServer(exports: [memoryExport()], handshakeTimeout: 5)
            weakServer = server
            weakRegistry = server.registry
            let client = try connectLoopback(port: server.boundPorts[0])
            #expect(try client.negotiate(export: "mem") == 1 << 20)
            client.close()
            server.shutdown()
            server.waitUntilStopped()
        }()
        // The acceptor, shutdown and watchdog threads end on their own just after the stop.
        for _ in 0..<100 where weakServer != nil || weakRegistry != nil { usleep(50_000) }
        #expect(weakServer == nil, "the server outlived its stop")
        #expect(weakRegistry == nil, "the connection registry outlived its server")
    }

    @Test("a second server on a busy port fails with addressInUse")
    func portInUse() throws {
        let server = try startServer(exports: [memoryExport()])
        defer { server.shutdown(); server.waitUntilStopped() }
        let second = try NBDServer(configuration: ServerConfiguration(
            listenAddresses: [.tcp(host: "127.0.0.1", port: server.boundPorts[0])], exports: [memoryExport()]), logger: .init(label: "x"))
        let error = #expect(throws: ServerError.self) { try second.start() }
        #expect(error?.code == .addressInUse)
    }

    @Test("bad configurations are refused with a clear error")
    func badConfiguration() throws {
        #expect(throws: ServerError.self) {
            _ = try NBDServer(configuration: ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)], exports: []),
                              logger: .init(label: "x"))
        }
        #expect(throws: ServerError.self) {
            _ = try NBDServer(configuration: ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)],
                                                                 exports: [memoryExport("x"), memoryExport("x")]), logger: .init(label: "x"))
        }
        #expect(throws: ServerError.self) {
            _ = try NBDServer(configuration: ServerConfiguration(listenAddresses: [.tcp(host: "127.0.0.1", port: 0)],
                                                                 exports: [memoryExport()], tlsMode: .require), logger: .init(label: "x"))
        }
    }

    @Test("systemd activation variables are honoured only for this process and must be numbers")
    func systemdActivation() throws {
        let mine = "\(getpid())"
        #expect(try SystemdSocketActivation.listenAddresses(environment: ["LISTEN_PID": mine, "LISTEN_FDS": "2"], unsetEnvironment: false)
            == [.inherited(fd: 3), .inherited(fd: 4)])
        #expect(try SystemdSocketActivation.listenAddresses(environment: ["LISTEN_PID": "1", "LISTEN_FDS": "2"], unsetEnvironment: false).isEmpty)
        #expect(try SystemdSocketActivation.listenAddresses(environment: [:], unsetEnvironment: false).isEmpty)
        #expect(throws: ServerError.self) {
            try SystemdSocketActivation.listenAddresses(environment: ["LISTEN_PID": mine, "LISTEN_FDS": "many"], unsetEnvironment: false)
        }
    }
}
