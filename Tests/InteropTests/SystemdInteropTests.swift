import Foundation
import Testing

/// contrib/systemd as scripts/install.sh installs it: the units verify, the services are
/// hardened as documented, and their own ExecStart=/ExecReload= lines, run under
/// systemd-socket-activate (this machine need not run systemd), serve real clients over TLS.
@Suite("systemd units: verify, hardening, socket activation, reload", .serialized, .noLeftoverProcesses)
struct SystemdInteropTests {
    static let units = ["swiftnbd.socket", "swiftnbd.service", "swiftnbd@.socket", "swiftnbd@.service"]

    @Test("systemd-analyze verify accepts every installed unit, and does check ExecStart",
          .enabled(if: Peers.available("systemd-analyze")))
    func unitsVerify() throws {
        let fixture = try SystemdServiceFixture()
        let unitDirectory = "\(fixture.prefix)/lib/systemd/system"
        for unit in Self.units {
            let result = try run(["systemd-analyze", "verify", "--man=no", "\(unitDirectory)/\(unit)"])
            #expect(result.succeeded && result.stderr.isEmpty && result.stdout.isEmpty, "\(unit): \(result)")
        }
        // A unit whose binary is missing must fail, or the check above proves nothing.
        let broken = fixture.scratch.file("broken")
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        for unit in ["swiftnbd.socket", "swiftnbd.service"] {
            let text = try String(contentsOfFile: "\(unitDirectory)/\(unit)", encoding: .utf8)
            try text.replacingOccurrences(of: "\(fixture.prefix)/bin/swiftnbd", with: "/nonexistent/swiftnbd")
                .write(toFile: "\(broken)/\(unit)", atomically: true, encoding: .utf8)
        }
        let result = try run(["systemd-analyze", "verify", "--man=no", "\(broken)/swiftnbd.service"])
        #expect(!result.succeeded && result.stderr.contains("/nonexistent/swiftnbd"), "\(result)")
    }

    @Test("both services carry the same hardening, as documented, with an exposure of at most 2.0",
          .enabled(if: Peers.available("systemd-analyze")))
    func hardening() throws {
        let fixture = try SystemdServiceFixture()
        let single = try fixture.unit("swiftnbd.service"), template = try fixture.unit("swiftnbd@.service")
        let settings = { (unit: SystemdUnitFile) in unit.entries.filter { $0.section == "Service" && $0.key != "EnvironmentFile" } }
        #expect(settings(single) == settings(template))
        #expect(try single.value("EnvironmentFile", in: "Service") == "/etc/swiftnbd/swiftnbd.conf")
        #expect(try template.value("EnvironmentFile", in: "Service") == "/etc/swiftnbd/%i.conf")
        let required: [(String, String)] = [
            ("User", "swiftnbd"), ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""),
            ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
            ("ProtectKernelTunables", "yes"), ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("SystemCallFilter", "@system-service"),
            ("ReadWritePaths", SystemdServiceFixture.imageDirectory), ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ]
        for (key, value) in required {
            #expect(single.values(key, in: "Service") == [value], "\(key)=")
        }
        for unit in ["swiftnbd.service", "swiftnbd@.service"] {
            let result = try run(["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager",
                                  "\(fixture.prefix)/lib/systemd/system/\(unit)"])
            #expect(result.succeeded, "\(unit): \(result)")
            #expect(result.stdout.contains("Overall exposure level for"), "\(unit): \(result)")
        }
    }

    @Test("with DESTDIR, the staged sysusers and tmpfiles snippets create the user and private directories",
          .enabled(if: Peers.available("systemd-sysusers", "systemd-tmpfiles")))
    func sysusersAndTmpfiles() throws {
        let scratch = TempDir("systemd-destdir")
        let root = scratch.file("root")
        try InstallScript.install(prefix: "/usr", destdir: root)
        let unit = try SystemdUnitFile(path: "\(root)/usr/lib/systemd/system/swiftnbd.service")
        #expect(try unit.value("ExecStart", in: "Service").hasPrefix("/usr/bin/swiftnbd serve "))
        try FileManager.default.createDirectory(atPath: "\(root)/etc", withIntermediateDirectories: true)
        let users = try run(["systemd-sysusers", "--root=\(root)"])
        #expect(users.succeeded, "\(users)")
        let passwd = try String(contentsOfFile: "\(root)/etc/passwd", encoding: .utf8)
        let entry = passwd.split(separator: "\n").first { $0.hasPrefix("swiftnbd:") }?.split(separator: ":", omittingEmptySubsequences: false)
        #expect(entry?[6] == "/usr/sbin/nologin", "\(passwd)")
        let tmpfiles = try run(["systemd-tmpfiles", "--root=\(root)", "--create", "swiftnbd.conf"])
        #expect(tmpfiles.succeeded, "\(tmpfiles)")
        let uid = entry.flatMap { UInt32($0[2]) }
        for (path, mode, owner) in [("/etc/swiftnbd/tls", 0o700, uid), ("/var/lib/swiftnbd", 0o750, uid), ("/etc/swiftnbd", 0o755, 0)] {
            var info = stat()
            #expect(stat("\(root)\(path)", &info) == 0, "\(path)")
            #expect(info.st_mode & 0o7777 == mode, "\(path): mode \(String(info.st_mode & 0o7777, radix: 8))")
            #expect(info.st_uid == owner, "\(path): owner \(info.st_uid)")
        }
    }

    @Test("swiftnbd.service's ExecStart, socket-activated, serves qemu-img, qemu-io and nbdinfo over TLS only",
          .enabled(if: Peers.available("systemd-socket-activate", "qemu-img", "qemu-io", "nbdinfo")))
    func activatedServesTLSClients() throws {
        let fixture = try SystemdServiceFixture()
        let image = fixture.mapped("\(SystemdServiceFixture.imageDirectory)/disk.img")
        try makePatternFile(image, size: 8 << 20, seed: 3)
        try fixture.write(fixture.exampleConfig(), to: "/etc/swiftnbd/swiftnbd.conf")
        let (argv, _) = try fixture.execStart(service: "swiftnbd.service")
        #expect(argv.first == "\(fixture.prefix)/bin/swiftnbd", "\(argv)")
        #expect(try fixture.unit("swiftnbd.socket").value("ListenStream", in: "Socket") == "10809")

        let port = FreePort.next()
        let server = try SocketActivatedServer(listen: "127.0.0.1:\(port)", command: argv)
        defer { server.stop() }
        try server.waitUntilListening(.tcp(host: "127.0.0.1", port: port))
        let client = try fixture.credentials.clientDirectory()
        let object = QEMUTLS.x509(dir: client, endpoint: "client")
        let opts = QEMUTLS.nbdImageOpts(port: port, export: "disk")

        let info = try run(["qemu-img", "info", "--object", object, "--image-opts", opts], timeout: 30)
        #expect(info.succeeded && info.stdout.contains("(8388608 bytes)"), "\(info)\n\(server.log)")
        let io = try run(["qemu-io", "--object", object, "--image-opts", opts,
                          "-c", "write -P 0x5a 1M 64k", "-c", "flush", "-c", "read -P 0x5a 1M 64k"], timeout: 30)
        #expect(io.succeeded && io.stdout.contains("read 65536/65536") && !io.stdout.contains("failed"), "\(io)\n\(server.log)")
        let written = try FileHandle(forReadingFrom: URL(fileURLWithPath: image))
        try written.seek(toOffset: 1 << 20)
        #expect(try written.read(upToCount: 65536) == Data(repeating: 0x5a, count: 65536))
        try written.close()
        let nbdinfo = try run(["nbdinfo", "--json", "nbds://127.0.0.1:\(port)/disk?tls-certificates=\(client)"], timeout: 30)
        #expect(nbdinfo.succeeded && nbdinfo.stdout.contains("\"export-size\": 8388608"), "\(nbdinfo)\n\(server.log)")
        let plain = try run(["nbdinfo", "nbd://127.0.0.1:\(port)/disk"], timeout: 30)
        #expect(!plain.succeeded, "plaintext got through: \(plain)")

        #expect(server.stop(), "the server did not stop on SIGTERM\n\(server.log)")
        #expect(server.log.contains("(fd 3)") && server.log.contains("stopped"), "\(server.log)")
    }

    @Test("systemctl reload (the unit's ExecReload) makes an activated server use renewed credentials, keeping open sessions",
          .enabled(if: Peers.available("systemd-socket-activate", "qemu-img", "nbdinfo", "nbdsh")))
    func reloadRenewsCredentials() throws {
        let fixture = try SystemdServiceFixture()
        try makeSparseFile(fixture.mapped("\(SystemdServiceFixture.imageDirectory)/disk.img"), size: 4 << 20)
        try fixture.write(fixture.exampleConfig(), to: "/etc/swiftnbd/swiftnbd.conf")
        let port = FreePort.next()
        let server = try SocketActivatedServer(listen: "127.0.0.1:\(port)", command: try fixture.execStart(service: "swiftnbd.service").argv)
        defer { server.stop() }
        try server.waitUntilListening(.tcp(host: "127.0.0.1", port: port))
        let uri = { (client: String) in "nbds://127.0.0.1:\(port)/disk?tls-certificates=\(client)" }
        let oldClient = try fixture.credentials.clientDirectory()
        try runExpectingSuccess(["nbdinfo", uri(oldClient)], server: nil)

        // A client connected before the reload, reading again after it.
        let connected = fixture.scratch.file("connected"), resume = fixture.scratch.file("resume")
        let session = try ServerProcess(["nbdsh", "-c", """
            import os, time
            h.set_uri_allow_local_file(True)
            h.connect_uri("\(uri(oldClient))")
            h.pread(4096, 0)
            open("\(connected)", "w").close()
            while not os.path.exists("\(resume)"): time.sleep(0.02)
            assert len(h.pread(4096, 4096)) == 4096
            print("still served")
            """], listener: nil, environment: nbdshEnvironment)
        defer { session.stop() }
        for _ in 0..<500 where !FileManager.default.fileExists(atPath: connected) && session.isRunning { usleep(20_000) }
        #expect(FileManager.default.fileExists(atPath: connected), "\(session.log)\n\(server.log)")

        let renewed = try TLSCredentials(label: "systemd-renewed")
        try fixture.installServerCredentials(from: renewed.directory)
        let reload = try fixture.reload(service: "swiftnbd.service", mainPID: server.launchedPID)
        #expect(reload.succeeded, "\(reload)")
        #expect(server.waitForLog("TLS credentials reloaded"), "\(server.log)")
        _ = FileManager.default.createFile(atPath: resume, contents: nil)
        #expect(session.waitForExit(timeout: 30) == 0 && session.log.contains("still served"), "\(session.log)\n\(server.log)")

        let newClient = try renewed.clientDirectory()
        let fresh = try run(["nbdinfo", uri(newClient)], timeout: 30)
        #expect(fresh.succeeded, "\(fresh)\n\(server.log)")
        let info = try run(["qemu-img", "info", "--object", QEMUTLS.x509(dir: newClient, endpoint: "client"),
                            "--image-opts", QEMUTLS.nbdImageOpts(port: port, export: "disk")], timeout: 30)
        #expect(info.succeeded, "\(info)\n\(server.log)")
        let stale = try run(["nbdinfo", uri(oldClient)], timeout: 30)
        #expect(!stale.succeeded, "the old CA still works after reload: \(stale)")
        #expect(server.stop(), "\(server.log)")
    }

    @Test("swiftnbd@vm1 reads /etc/swiftnbd/vm1.conf and serves its Unix socket; quoted words stay whole",
          .enabled(if: Peers.available("systemd-socket-activate", "nbdinfo", "qemu-img")))
    func templateInstance() throws {
        let fixture = try SystemdServiceFixture()
        let images = fixture.mapped(SystemdServiceFixture.imageDirectory)
        try makeSparseFile("\(images)/sys.img", size: 2 << 20)
        try makeSparseFile("\(images)/data.img", size: 3 << 20)
        try fixture.write("""
            # vm1: two exports, one description with spaces and a comma
            SWIFTNBD_EXPORTS="--export 'sys=\(images)/sys.img,desc=System disk, first' --export data=\(images)/data.img,ro"
            SWIFTNBD_TLS="--tls-certificates \(fixture.mapped(SystemdServiceFixture.tlsDirectory))"
            """, to: "/etc/swiftnbd/vm1.conf")
        let (argv, environmentFile) = try fixture.execStart(service: "swiftnbd@.service", instance: "vm1")
        #expect(environmentFile == "/etc/swiftnbd/vm1.conf")
        #expect(argv.contains("sys=\(images)/sys.img,desc=System disk, first"), "\(argv)")
        let listen = SystemdSyntax.expandSpecifiers(try fixture.unit("swiftnbd@.socket").value("ListenStream", in: "Socket"), instance: "vm1")
        #expect(listen == "/run/swiftnbd/vm1.sock")
        let socket = fixture.mapped(listen)

        let server = try SocketActivatedServer(listen: socket, command: argv)
        defer { server.stop() }
        try server.waitUntilListening(.unix(path: socket))
        let client = try fixture.credentials.clientDirectory()
        let list = try run(["nbdinfo", "--list", "--json", "nbds+unix:///?socket=\(socket)&tls-certificates=\(client)"], timeout: 30)
        #expect(list.succeeded, "\(list)\n\(server.log)")
        let exports = ((try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [String: Any])?["exports"] as? [[String: Any]]) ?? []
        #expect(exports.map { $0["export-name"] as? String } == ["sys", "data"], "\(list.stdout)")
        #expect(exports.first?["description"] as? String == "System disk, first")
        #expect(exports.last?["is_read_only"] as? Bool == true)
        let info = try run(["qemu-img", "info", "--object", QEMUTLS.x509(dir: client, endpoint: "client"), "--image-opts",
                            "driver=nbd,server.type=unix,server.path=\(socket),export=data,tls-creds=tls0,tls-hostname=localhost"],
                           timeout: 30)
        #expect(info.succeeded && info.stdout.contains("(3145728 bytes)"), "\(info)\n\(server.log)")
        #expect(server.stop(), "\(server.log)")
    }

    @Test("the example config's commented metrics option, switched on, serves Prometheus metrics",
          .enabled(if: Peers.available("systemd-socket-activate", "nbdinfo") && serveHasMetricsOption()))
    func metricsOption() throws {
        let fixture = try SystemdServiceFixture()
        try makeSparseFile(fixture.mapped("\(SystemdServiceFixture.imageDirectory)/disk.img"), size: 1 << 20)
        let example = try fixture.exampleConfig()
        let commented = "#SWIFTNBD_OPTIONS=\"--metrics 127.0.0.1:9617\""
        #expect(example.contains("\n\(commented)\n"), "the example no longer offers the metrics option")
        #expect(SystemdSyntax.parseEnvironmentFile(example)["SWIFTNBD_OPTIONS"] == nil, "metrics must be off by default")
        let metricsPort = FreePort.next()
        try fixture.write(example.replacingOccurrences(of: commented, with: "SWIFTNBD_OPTIONS=\"--metrics 127.0.0.1:\(metricsPort)\""),
                          to: "/etc/swiftnbd/swiftnbd.conf")
        let port = FreePort.next()
        let server = try SocketActivatedServer(listen: "127.0.0.1:\(port)", command: try fixture.execStart(service: "swiftnbd.service").argv)
        defer { server.stop() }
        try server.waitUntilListening(.tcp(host: "127.0.0.1", port: port))
        let client = try fixture.credentials.clientDirectory()
        try runExpectingSuccess(["nbdinfo", "nbds://127.0.0.1:\(port)/disk?tls-certificates=\(client)"], server: nil)
        var page = ""
        for _ in 0..<100 where !page.contains("swiftnbd_") {
            page = httpGet(port: metricsPort, path: "/metrics")
            if !page.contains("swiftnbd_") { usleep(50_000) }
        }
        #expect(page.hasPrefix("HTTP/1.1 200") || page.hasPrefix("HTTP/1.0 200"), "\(page.prefix(300))\n\(server.log)")
        #expect(page.contains("swiftnbd_"), "\(server.log)")
        #expect(server.stop(), "\(server.log)")
    }
}

/// Whether this build's `swiftnbd serve` has `--metrics` (added alongside these units).
private func serveHasMetricsOption() -> Bool {
    ((try? run([Peers.swiftnbd, "serve", "--help"]))?.stdout ?? "").contains("--metrics")
}

/// A plain HTTP/1.0 GET on 127.0.0.1, the whole response as text ("" when it cannot connect).
private func httpGet(port: Int, path: String) -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard connected else { return "" }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, 0) == request.count else { return "" }
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    return String(decoding: response, as: UTF8.self)
}
