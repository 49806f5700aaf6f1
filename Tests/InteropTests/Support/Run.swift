import Foundation

struct RunResult: CustomStringConvertible {
    var status: Int32
    var stdout: String
    var stderr: String
    var succeeded: Bool { status == 0 }
    var description: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

struct RunTimeout: Error, CustomStringConvertible {
    var command: [String]
    var seconds: Double
    var description: String { "timed out after \(seconds)s: \(command.joined(separator: " "))" }
}

/// Runs a command to completion with a time limit; output is captured through files so a
/// chatty peer can never block on a full pipe.
@discardableResult
func run(_ arguments: [String], environment: [String: String] = [:], stdin: Data? = nil,
         timeout: Double = 120) throws -> RunResult {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("out"), errURL = scratch.appendingPathComponent("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    var env = ProcessLedger.environment()
    env.merge(environment) { _, new in new }
    process.environment = env
    var handles = [try FileHandle(forWritingTo: outURL), try FileHandle(forWritingTo: errURL)]
    process.standardOutput = handles[0]
    process.standardError = handles[1]
    if let stdin {
        let inURL = scratch.appendingPathComponent("in")
        try stdin.write(to: inURL)
        handles.append(try FileHandle(forReadingFrom: inURL))
        process.standardInput = handles[2]
    } else {
        process.standardInput = FileHandle.nullDevice
    }
    try spawn(process, closingAfterwards: handles)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw RunTimeout(command: arguments, seconds: timeout)
    }
    let out = String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self)
    let err = String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self)
    return RunResult(status: process.terminationStatus, stdout: out, stderr: err)
}

/// Starts `process` with a clean signal mask, then closes the parent's copies of the files it
/// was given as standard streams: the child has its own, and Foundation never closes them (a
/// `Process` is not released), so each spawn would otherwise leak them. Thousands of leaked
/// descriptors made `Process.run()` itself crash: it lists /proc/self/fd and over-reads a
/// directory entry at the end of glibc's buffer once the listing fills it (a corelibs-foundation
/// bug in Swift 6.3.1; with a few dozen descriptors the listing never gets near the end).
func spawn(_ process: Process, closingAfterwards handles: [FileHandle]) throws {
    defer { for handle in handles { try? handle.close() } }
    try withUnblockedSignals { try process.run() }
}

/// A fresh directory removed when the value is released.
final class TempDir: @unchecked Sendable {
    let path: String
    init(_ label: String = "swiftnbd-test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { "\(path)/\(name)" }
}

/// Writes a file of `size` bytes filled from a seeded generator (deterministic, incompressible).
func makePatternFile(_ path: String, size: Int, seed: UInt64 = 1) throws {
    var state = seed &* 0x9E3779B97F4A7C15 | 1
    var data = Data(count: size)
    data.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            words[i] = state
        }
    }
    try data.write(to: URL(fileURLWithPath: path))
}

/// Creates a sparse file of `size` bytes (all holes).
func makeSparseFile(_ path: String, size: UInt64) throws {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try handle.truncate(atOffset: size)
    try handle.close()
}

func filesEqual(_ a: String, _ b: String) -> Bool {
    FileManager.default.contentsEqual(atPath: a, andPath: b)
}
