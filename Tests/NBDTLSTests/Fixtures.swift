import Foundation
import NBDTLS

/// A scratch directory removed on release.
final class Scratch: @unchecked Sendable {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("nbdtls-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { "\(path)/\(name)" }
    func write(_ name: String, _ text: String) throws -> String {
        try text.write(toFile: file(name), atomically: true, encoding: .utf8)
        return file(name)
    }
    func subdirectory(_ name: String) -> String {
        try? FileManager.default.createDirectory(atPath: file(name), withIntermediateDirectories: true)
        return file(name)
    }
}

/// A PKI in QEMU's layout (CA, server for localhost/127.0.0.1, client, keys.psk with alice).
struct TestPKI {
    let scratch = Scratch()
    var directory: String { scratch.file("pki") }
    var pskFile: String { "\(directory)/keys.psk" }

    init(hostnames: [String] = ["localhost"], ipAddresses: [String] = ["127.0.0.1"], clientName: String = "swiftnbd-client",
         leafValidity: (notBefore: Int, notAfter: Int)? = nil) throws {
        try CredentialDirectoryBuilder(hostnames: hostnames, ipAddresses: ipAddresses, clientName: clientName,
                                       pskUsers: ["alice"], leafValidity: leafValidity).create(in: scratch.file("pki"))
    }

    /// A client directory holding only this PKI's CA (no client certificate).
    func caOnlyDirectory() throws -> String {
        let dir = scratch.subdirectory("ca-only")
        try FileManager.default.copyItem(atPath: "\(directory)/ca-cert.pem", toPath: "\(dir)/ca-cert.pem")
        return dir
    }
}

/// Two connected stream sockets.
func socketPair() -> (SocketStream, SocketStream) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
    return (SocketStream(fd: fds[0]), SocketStream(fd: fds[1]))
}

/// Runs a server handshake on one end of a socketpair (on a thread) and a client handshake
/// on the other; returns both outcomes.
func handshake(server: TLSServerContext, client: TLSClientContext, hostname: String? = "localhost")
    -> (server: Result<TLSServerHandshake, Error>, client: Result<TLSSession, Error>) {
    let (serverSocket, clientSocket) = socketPair()
    let box = ResultBox()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        box.result = Result { try server.accept(on: serverSocket) }
        done.signal()
    }
    thread.start()
    let clientResult = Result { try client.connect(on: clientSocket, hostname: hostname) }
    if case .failure = clientResult { clientSocket.close() }
    if done.wait(timeout: .now() + 60) == .timedOut { serverSocket.close(); _ = done.wait(timeout: .now() + 10) }
    return (box.result ?? .failure(TLSError(.timedOut, "server thread did not finish")), clientResult)
}

final class ResultBox: @unchecked Sendable {
    var result: Result<TLSServerHandshake, Error>?
}

extension Result {
    var error: Failure? { if case let .failure(e) = self { return e }; return nil }
    var tlsError: TLSError? { error as? TLSError }
    var value: Success? { try? get() }
}

/// Server handshake timeout for tests whose subject is not the timeout: generous, because
/// under AddressSanitizer on a loaded 2-core machine a handshake between parallel tests has
/// taken longer than the production default of 10 s (seen in CI's sanitizer stage).
let testHandshakeTimeout: Double = 120
