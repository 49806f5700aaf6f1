import Foundation
import Testing

/// The sandbox the services declare, checked against what the server really does: this machine
/// cannot run the units under systemd, so the activated server runs under strace while real
/// clients use every kind of request, a reload and a shutdown, and each system call, socket
/// family and file opened for writing must be one the unit allows.
@Suite("systemd sandbox: the server stays inside the units' filters", .serialized, .noLeftoverProcesses)
struct SystemdSandboxInteropTests {
    @Test("system calls, address families and writable paths of an activated TLS server fit the service's sandbox",
          .enabled(if: Peers.available("strace", "systemd-analyze", "systemd-socket-activate", "qemu-io", "qemu-img", "nbdinfo")))
    func serverFitsSandbox() throws {
        let fixture = try SystemdServiceFixture()
        let imageDirectory = fixture.mapped(SystemdServiceFixture.imageDirectory)
        try makePatternFile("\(imageDirectory)/disk.img", size: 4 << 20, seed: 5)
        try fixture.write(fixture.exampleConfig(), to: "/etc/swiftnbd/swiftnbd.conf")
        let service = try fixture.unit("swiftnbd.service")
        let trace = fixture.scratch.file("strace.txt")
        let port = FreePort.next()
        let server = try SocketActivatedServer(listen: "127.0.0.1:\(port)", command: try fixture.execStart(service: "swiftnbd.service").argv,
                                               wrapper: ["strace", "-f", "-qq", "-o", trace])
        defer { server.stop() }
        try server.waitUntilListening(.tcp(host: "127.0.0.1", port: port))
        // strace's one child is systemd-socket-activate, which became the server.
        let serverPID = try #require(SocketActivatedServer.children(of: server.launchedPID).first)

        let client = try fixture.credentials.clientDirectory()
        let object = QEMUTLS.x509(dir: client, endpoint: "client"), opts = QEMUTLS.nbdImageOpts(port: port, export: "disk")
        let io = try run(["qemu-io", "--object", object, "--image-opts", opts, "-c", "write -P 0x11 0 1M", "-c", "write -z 1M 1M",
                          "-c", "discard 2M 1M", "-c", "write -f -P 0x22 3M 64k", "-c", "flush", "-c", "read -P 0x11 0 1M"], timeout: 60)
        #expect(io.succeeded && !io.stdout.contains("failed"), "\(io)\n\(server.log)")
        let map = try run(["qemu-img", "map", "--output=json", "--object", object, "--image-opts", opts], timeout: 60)
        #expect(map.succeeded, "\(map)")
        try runExpectingSuccess(["nbdinfo", "--map", "nbds://127.0.0.1:\(port)/disk?tls-certificates=\(client)"], server: nil)
        #expect(try fixture.reload(service: "swiftnbd.service", mainPID: serverPID).succeeded)
        #expect(server.waitForLog("TLS credentials reloaded"), "\(server.log)")
        #expect(server.stop(serverPID: serverPID), "\(server.log)")

        let calls = try serverCalls(trace: String(contentsOfFile: trace, encoding: .utf8), binary: "\(fixture.prefix)/bin/swiftnbd")
        #expect(!calls.isEmpty)
        let filter = try service.value("SystemCallFilter", in: "Service")
        let allowed = try syscallSet(filter)
        #expect(allowed.contains("openat") && !allowed.contains("reboot") && !allowed.contains("mount"), "\(allowed.count) calls")
        let denied = Set(calls.map(\.name)).subtracting(allowed)
        #expect(denied.isEmpty, "not in \(filter): \(denied.sorted())")

        let families = Set(try service.value("RestrictAddressFamilies", in: "Service").split(separator: " ").map(String.init))
        let used = Set(calls.filter { $0.name == "socket" }.compactMap { $0.arguments.split(separator: ",").first.map(String.init) })
        #expect(used.isSubset(of: families), "socket families \(used.sorted()) beyond \(families.sorted())")

        // ProtectSystem=strict: only ReadWritePaths=, the private /tmp and /dev may be written.
        let writable = ["\(imageDirectory)/", "/tmp/", "/var/tmp/", "/dev/"]
        let writes = calls.filter { ["open", "openat", "creat"].contains($0.name) && opensForWriting($0.arguments) }
            .compactMap { quotedPath(in: $0.arguments) }
        let outside = writes.filter { path in !writable.contains { path.hasPrefix($0) } }
        #expect(outside.isEmpty, "opened for writing outside the writable paths: \(outside)")
        #expect(writes.contains("\(imageDirectory)/disk.img"), "\(writes)")
    }
}

/// One traced system call: its name and the raw text between the parentheses.
private struct TracedCall {
    var name: String
    var arguments: String
}

/// The calls made after systemd-socket-activate exec'd `binary` (its own calls come before),
/// from `strace -f` output ("PID name(args) = result", unfinished/resumed halves included).
private func serverCalls(trace: String, binary: String) throws -> [TracedCall] {
    let lines = trace.split(separator: "\n").map(String.init)
    guard let exec = lines.firstIndex(where: { $0.contains("execve(\"\(binary)\"") }) else {
        throw FixtureError("no execve of \(binary) in the trace")
    }
    let call = try Regex(#"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)(.*)$"#)
    return lines[exec...].compactMap { line in
        guard let match = line.firstMatch(of: call), let name = match.output[1].substring else { return nil }
        return TracedCall(name: String(name), arguments: String(match.output[2].substring ?? ""))
    }
}

/// A SystemCallFilter= allow list as system call names, groups expanded by systemd-analyze.
private func syscallSet(_ filter: String) throws -> Set<String> {
    var names = Set<String>()
    var seen = Set<String>()
    var pending = filter.split(separator: " ").map(String.init)
    while let item = pending.popLast() {
        guard item.hasPrefix("@") else { names.insert(item); continue }
        guard seen.insert(item).inserted else { continue }
        let listing = try run(["systemd-analyze", "syscall-filter", "--no-pager", item])
        guard listing.succeeded else { throw FixtureError("systemd-analyze syscall-filter \(item): \(listing)") }
        for line in listing.stdout.split(separator: "\n").dropFirst() {
            let entry = line.trimmingCharacters(in: .whitespaces)
            if entry.isEmpty || entry.hasPrefix("#") { continue }
            pending.append(entry)
        }
    }
    return names
}

private func opensForWriting(_ arguments: String) -> Bool {
    ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"].contains { arguments.contains($0) }
}

private func quotedPath(in arguments: String) -> String? {
    guard let open = arguments.firstIndex(of: "\"") else { return nil }
    let rest = arguments[arguments.index(after: open)...]
    return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
}
