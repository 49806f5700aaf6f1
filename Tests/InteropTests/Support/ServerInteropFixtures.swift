import Foundation

/// A `swiftnbd serve` process under test, on 127.0.0.1 with a free port (or a Unix socket).
final class SwiftNBDServe: @unchecked Sendable {
    let process: ServerProcess
    let port: Int
    let socketPath: String?

    /// Starts `swiftnbd serve ARGS --bind 127.0.0.1 --port P` (or `--unix PATH`) and waits
    /// until it accepts connections.
    init(_ arguments: [String], unixSocket: String? = nil) throws {
        port = FreePort.next()
        socketPath = unixSocket
        var command = [Peers.swiftnbd, "serve"] + arguments
        let listener: Listener
        if let unixSocket {
            command += ["--unix", unixSocket]
            listener = .unix(path: unixSocket)
        } else {
            command += ["--bind", "127.0.0.1", "--port", String(port)]
            listener = .tcp(host: "127.0.0.1", port: port)
        }
        process = try ServerProcess(command, listener: listener)
    }

    /// `nbd://127.0.0.1:PORT/NAME`, or `nbd+unix:///NAME?socket=PATH`.
    func uri(_ name: String = "") -> String {
        if let socketPath { return "nbd+unix:///\(name)?socket=\(socketPath)" }
        return "nbd://127.0.0.1:\(port)/\(name)"
    }

    var log: String { process.log }

    @discardableResult
    func stop() -> Int32 { process.stop() }
}

/// Runs a command and records a readable failure (with the server log) if it fails.
@discardableResult
func runExpectingSuccess(_ arguments: [String], server: SwiftNBDServe?, environment: [String: String] = [:],
                         timeout: Double = 120) throws -> RunResult {
    let result = try run(arguments, environment: environment, timeout: timeout)
    if !result.succeeded {
        throw FixtureFailure("\(arguments.joined(separator: " ")) failed: \(result)\n--- server log\n\(server?.log ?? "")")
    }
    return result
}

struct FixtureFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// nbdsh from /usr/bin (a Python-less PATH entry elsewhere may shadow it).
let nbdshEnvironment = ["PATH": "/usr/bin:" + (ProcessInfo.processInfo.environment["PATH"] ?? "/bin")]

/// Reads a whole file.
func fileBytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }
