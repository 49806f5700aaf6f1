import Foundation
import QMP

/// An in-process stand-in for QEMU's monitor over a socketpair, used only to test the QMP
/// parser and client state machine on inputs a real QEMU will not produce on demand (garbage,
/// truncated JSON, missing ids). Real QEMU is exercised by the interop tests.
final class MigrationFakeQMPPeer: @unchecked Sendable {
    /// What the peer does with one request line: the raw lines to answer (without CR LF), or
    /// `nil` to close the connection.
    typealias Responder = @Sendable (_ request: QMPValue) -> [String]?

    let clientFD: Int32
    private let peerFD: Int32
    private let lock = NSLock()
    private var received: [QMPValue] = []

    static let greeting = #"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#

    init(opening: [String] = [MigrationFakeQMPPeer.greeting], responder: @escaping Responder = MigrationFakeQMPPeer.echoSuccess) {
        var fds: [Int32] = [0, 0]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        clientFD = fds[0]
        peerFD = fds[1]
        let thread = Thread { [self] in serve(opening: opening, responder: responder) }
        thread.start()
    }

    deinit {
        shutdown(peerFD, Int32(SHUT_RDWR))
        close(peerFD)
    }

    /// Every request the client sent, parsed.
    var requests: [QMPValue] {
        lock.lock(); defer { lock.unlock() }
        return received
    }

    /// Answers `{"return": {}}` with the request's id.
    static let echoSuccess: Responder = { request in
        [#"{"return": {}, "id": \#(request["id"]?.description ?? "null")}"#]
    }

    func send(_ line: String) {
        sendRaw(Array((line + "\r\n").utf8))
    }

    /// Sends bytes as they are, e.g. a message cut short.
    func sendRaw(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Foundation.send(peerFD, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func hangUp() {
        shutdown(peerFD, Int32(SHUT_RDWR))
    }

    private func serve(opening: [String], responder: Responder) {
        for line in opening { send(line) }
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(peerFD, $0.baseAddress, $0.count) }
            if count <= 0 { return }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[..<newline]
                pending.removeSubrange(...newline)
                guard let request = try? QMPValue.parse(line) else { continue }
                lock.lock(); received.append(request); lock.unlock()
                guard let answers = responder(request) else { hangUp(); return }
                for answer in answers { send(answer) }
            }
        }
    }
}
