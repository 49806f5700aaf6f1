import Foundation
import Testing
@testable import QMP

/// The QMP client: its parser and reply/event matching against a scripted peer, then against
/// a real QEMU monitor.
@Suite("QMP client", .noLeftoverProcesses)
struct MigrationQMPInteropTests {
    private func connect(_ peer: MigrationFakeQMPPeer, timeout: Double = 5) throws -> QMPClient {
        try QMPClient(adoptingFileDescriptor: dup(peer.clientFD), timeout: timeout)
    }

    @Test("the handshake reads the greeting and negotiates capabilities")
    func handshake() throws {
        let peer = MigrationFakeQMPPeer()
        let client = try connect(peer)
        #expect(client.greeting["version"]?["qemu"]?["major"] == 7)
        #expect(peer.requests.first?["execute"] == "qmp_capabilities")
    }

    @Test("replies are matched by id even after events and stale replies")
    func repliesMatchedByID() throws {
        let peer = MigrationFakeQMPPeer { request in
            let id = request["id"]!.description
            if request["execute"] == "query-status" {
                return [
                    #"{"event": "STOP", "timestamp": {"seconds": 1700000000, "microseconds": 500000}}"#,
                    #"{"return": {"status": "old"}, "id": "someone-else"}"#,
                    #"{"return": {"status": "paused", "running": false}, "id": \#(id)}"#,
                ]
            }
            return [#"{"return": {}, "id": \#(id)}"#]
        }
        let client = try connect(peer)
        let status = try client.execute("query-status")
        #expect(status["status"] == "paused")
        #expect(status["running"] == false)
        let stop = try client.waitForEvent(named: "STOP", timeout: 2)
        #expect(stop.timestamp == 1_700_000_000.5)
    }

    @Test("a refused command carries QEMU's error class and description")
    func errorReply() throws {
        let peer = MigrationFakeQMPPeer { request in
            if request["execute"] == "qmp_capabilities" { return [#"{"return": {}, "id": \#(request["id"]!)}"#] }
            return [#"{"error": {"class": "DeviceNotFound", "desc": "Device 'drive-vda' not found"}, "id": \#(request["id"]!)}"#]
        }
        let client = try connect(peer)
        let error = try #require(throws: QMPError.self) { try client.execute("block-job-cancel", ["device": "drive-vda"]) }
        #expect(error.code == .commandFailed)
        #expect(error.errorClass == "DeviceNotFound")
        #expect(error.command == "block-job-cancel")
        #expect(error.description.contains("Device 'drive-vda' not found"))
        #expect(peer.requests.last?["arguments"]?["device"] == "drive-vda")
    }

    @Test("waiting for an event takes the first match and leaves the others queued")
    func eventQueue() throws {
        let peer = MigrationFakeQMPPeer()
        let client = try connect(peer)
        peer.send(#"{"event": "MIGRATION", "data": {"status": "setup"}}"#)
        peer.send(#"{"event": "MIGRATION", "data": {"status": "active"}}"#)
        peer.send(#"{"event": "BLOCK_JOB_READY", "data": {"device": "drive-vda", "len": 270991360, "offset": 270991360}}"#)
        let ready = try client.waitForEvent(named: "BLOCK_JOB_READY", timeout: 2)
        #expect(ready.data["len"]?.intValue == 270_991_360)
        let active = try client.waitForEvent(named: "MIGRATION", timeout: 2) { $0.data["status"] == "active" }
        #expect(active.data["status"] == "active")
        #expect(client.takeEvents().map(\.data) == [["status": "setup"]])
    }

    @Test("waiting for an event that never comes ends at the time limit")
    func eventTimeout() throws {
        let client = try connect(MigrationFakeQMPPeer())
        let error = try #require(throws: QMPError.self) { try client.waitForEvent(named: "RESUME", timeout: 0.2) }
        #expect(error.code == .timedOut)
        #expect(error.message.contains("RESUME"))
    }

    @Test("a command without a reply ends at the time limit")
    func commandTimeout() throws {
        let peer = MigrationFakeQMPPeer { request in
            request["execute"] == "qmp_capabilities" ? [#"{"return": {}, "id": \#(request["id"]!)}"#] : []
        }
        let client = try connect(peer)
        let error = try #require(throws: QMPError.self) { try client.execute("query-migrate", timeout: 0.2) }
        #expect(error.code == .timedOut)
        #expect(error.command == "query-migrate")
    }

    @Test("a garbage line fails the waiting command as malformed")
    func garbageLine() throws {
        let peer = MigrationFakeQMPPeer { request in
            request["execute"] == "qmp_capabilities" ? [#"{"return": {}, "id": \#(request["id"]!)}"#] : ["this is not json"]
        }
        let client = try connect(peer)
        let error = try #require(throws: QMPError.self) { try client.execute("query-status") }
        #expect(error.code == .malformedMessage)
        #expect(error.message.contains("this is not json"))
        #expect(!client.isConnected)
    }

    @Test("JSON that is not a QMP message is rejected")
    func unknownMessage() throws {
        for line in [#"[1, 2, 3]"#, #"{"hello": 1}"#, #"{"error": {"desc": "no class"}, "id": 1}"#, #"{"event": 42}"#, "42"] {
            let peer = MigrationFakeQMPPeer { request in
                request["execute"] == "qmp_capabilities" ? [#"{"return": {}, "id": \#(request["id"]!)}"#] : [line]
            }
            let client = try connect(peer)
            let error = try #require(throws: QMPError.self, "\(line)") { try client.execute("query-status") }
            #expect(error.code == .malformedMessage, "\(line)")
        }
    }

    @Test("a connection closed in the middle of a message reports the truncated text")
    func truncatedMessage() throws {
        let peer = MigrationFakeQMPPeer()
        let client = try connect(peer)
        peer.sendRaw(Array(#"{"return": {"stat"#.utf8))
        peer.hangUp()
        let error = try #require(throws: QMPError.self) { try client.execute("query-status", timeout: 2) }
        #expect(error.code == .connectionClosed)
        #expect(error.message.contains(#"{"return": {"stat"#))
    }

    @Test("a first message that is not a greeting fails the handshake")
    func missingGreeting() {
        let peer = MigrationFakeQMPPeer(opening: [#"{"event": "SHUTDOWN"}"#], responder: { _ in [] })
        let error = #expect(throws: QMPError.self) { try QMPClient(adoptingFileDescriptor: dup(peer.clientFD), timeout: 0.3) }
        #expect(error?.code == .handshakeFailed)
    }

    @Test("a peer that closes before greeting is reported as closed")
    func closedBeforeGreeting() {
        let peer = MigrationFakeQMPPeer(opening: [], responder: { _ in nil })
        peer.hangUp()
        let error = #expect(throws: QMPError.self) { try QMPClient(adoptingFileDescriptor: dup(peer.clientFD), timeout: 2) }
        #expect(error?.code == .connectionClosed)
    }

    @Test("refused capabilities negotiation fails the handshake with QEMU's reason")
    func refusedCapabilities() {
        let peer = MigrationFakeQMPPeer { request in
            [#"{"error": {"class": "GenericError", "desc": "Capabilities negotiation is already complete"}, "id": \#(request["id"]!)}"#]
        }
        let error = #expect(throws: QMPError.self) { try QMPClient(adoptingFileDescriptor: dup(peer.clientFD), timeout: 2) }
        #expect(error?.code == .handshakeFailed)
        #expect(error?.errorClass == "GenericError")
    }
}

@Suite("QMP wire format", .noLeftoverProcesses)
struct MigrationQMPWireFormatTests {
    @Test("lines split on LF with the CR dropped, fed one byte at a time or all at once")
    func lineSplitting() throws {
        let text = Array("{\"a\": 1}\r\n\r\n{\"b\": 2}\n{\"c\"".utf8)
        var whole = QMPLineBuffer()
        #expect(try whole.append(text).map { String(decoding: $0, as: UTF8.self) } == [#"{"a": 1}"#, #"{"b": 2}"#])
        #expect(whole.unterminated == Array(#"{"c""#.utf8))
        var bytewise = QMPLineBuffer()
        var lines: [[UInt8]] = []
        for byte in text { lines += try bytewise.append([byte]) }
        #expect(lines.count == 2)
    }

    @Test("an endless line is refused instead of growing memory")
    func overlongLine() {
        var buffer = QMPLineBuffer(maximumLineLength: 16)
        #expect(throws: QMPError.self) { try buffer.append(Array(repeating: UInt8(ascii: "x"), count: 17)) }
    }

    @Test("booleans, integers and reals stay distinct")
    func valueKinds() throws {
        let value = try QMPValue.parse(Array(#"{"t": true, "one": 1, "zero": 0, "half": 0.5, "big": 270991360, "n": null, "s": "é\n"}"#.utf8))
        #expect(value["t"] == .bool(true))
        #expect(value["one"] == .int(1))
        #expect(value["zero"] == .int(0))
        #expect(value["half"] == .double(0.5))
        #expect(value["big"]?.intValue == 270_991_360)
        #expect(value["n"] == .null)
        #expect(value["s"] == "é\n")
    }

    @Test("encoding escapes strings and round-trips")
    func encodingRoundTrip() throws {
        let value: QMPValue = ["execute": "x", "arguments": ["s": "a\"b\\c\n\u{1}", "list": [1, true, nil, 2.5]]]
        let text = value.description
        #expect(text.contains(#"a\"b\\c\n\u0001"#))
        #expect(try QMPValue.parse(Array(text.utf8)) == value)
    }

    @Test("malformed JSON is a clear error, not a crash")
    func malformedJSON() {
        for text in ["", "{", #"{"a": }"#, "nul", "\u{FF}\u{FE}", #"{"a": 1} trailing"#] {
            #expect(throws: QMPError.self, "\(text)") { try QMPValue.parse(Array(text.utf8)) }
        }
    }
}

@Suite("QMP client against QEMU", .serialized, .noLeftoverProcesses)
struct MigrationQMPQEMUInteropTests {
    @Test("a real QEMU monitor answers queries and refuses unknown commands with its error class",
          .enabled(if: Peers.available("qemu-system-x86_64")), .timeLimit(.minutes(2)))
    func realMonitor() throws {
        let dir = TempDir("qmp")
        let vm = try MigrationVM(name: "probe", in: dir, disk: nil, tls: nil, incoming: false, paused: true)
        defer { vm.shutdown() }
        #expect(vm.qmp.greeting["version"]?["qemu"]?["major"]?.intValue ?? 0 >= 7)
        let status = try vm.qmp.execute("query-status")
        #expect(status["status"] == "prelaunch")
        let error = try #require(throws: QMPError.self) { try vm.qmp.execute("no-such-command") }
        #expect(error.code == .commandFailed)
        #expect(error.errorClass == "CommandNotFound")
        let badArgument = try #require(throws: QMPError.self) { try vm.qmp.execute("query-status", ["bogus": 1]) }
        #expect(badArgument.errorClass == "GenericError")
    }
}
