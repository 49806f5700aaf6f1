import Foundation

/// Starting `swiftnbd serve` on a qcow2 image for the qcow2 interop tests.
enum Qcow2Serve {
    static var usingQemuNbd: Bool { ProcessInfo.processInfo.environment["QCOW2_TEST_SERVER"] == "qemu-nbd" }

    /// The command serving `image` as qcow2 on a Unix socket. `QCOW2_TEST_SERVER=qemu-nbd`
    /// swaps in qemu-nbd, to check the tests themselves against the reference server.
    static func command(image: String, socket: String, readOnly: Bool = false) -> [String] {
        if usingQemuNbd {
            return ["qemu-nbd", "-f", "qcow2", "-k", socket, "-A", "-e", "8", "-t"] + (readOnly ? ["-r"] : []) + [image]
        }
        return [Peers.swiftnbd, "serve", image, "--format", "qcow2", "--unix", socket] + (readOnly ? ["--read-only"] : [])
    }

    static func start(image: String, socket: String, readOnly: Bool = false) throws -> ServerProcess {
        try ServerProcess(command(image: image, socket: socket, readOnly: readOnly), listener: .unix(path: socket))
    }

    /// Stops the server; ours must exit 0 after SIGTERM (qemu-nbd's status is not judged).
    static func stopCleanly(_ server: ServerProcess) -> Bool {
        let status = server.stop()
        return usingQemuNbd || status == 0
    }

    /// Whether the built `swiftnbd serve` knows the qcow2 format yet (the serve tests wait for it).
    static let available: Bool = {
        if usingQemuNbd { return true }
        guard let help = try? run([Peers.swiftnbd, "serve", "--help"], timeout: 30) else { return false }
        return help.stdout.contains("qcow2")
    }()

    static func uri(_ socket: String) -> String { "nbd+unix:///?socket=\(socket)" }
}

/// One qemu-io command of a crash-test script, and what it leaves on disk once acknowledged.
struct QemuIOCommand {
    enum Kind { case write(pattern: UInt8, fua: Bool), zero, zeroUnmap, discard, flush }
    var kind: Kind
    var offset: UInt64 = 0
    var length: UInt64 = 0

    var text: String {
        switch kind {
        case let .write(pattern, fua): "write \(fua ? "-f " : "")-P \(pattern) \(offset) \(length)"
        case .zero: "write -z \(offset) \(length)"
        case .zeroUnmap: "write -z -u \(offset) \(length)"
        case .discard: "discard \(offset) \(length)"
        case .flush: "flush"
        }
    }
    /// Whether qemu-io prints a "wrote …"/"discard …" line when the command completes.
    var reports: Bool { if case .flush = kind { false } else { true } }
    /// The read-back command that checks the command's effect.
    var verification: String? {
        switch kind {
        case let .write(pattern, _): "read -P \(pattern) \(offset) \(length)"
        case .zero, .zeroUnmap: "read -P 0 \(offset) \(length)"
        case .discard, .flush: nil  // discarded bytes are unspecified
        }
    }
}

/// Given a script and how many of its reporting commands were acknowledged, the commands
/// whose effect must have survived a crash: FUA writes acknowledged, and any write followed by
/// a flush that completed (a flush completed when a later command was acknowledged).
func durableCommands(_ script: [QemuIOCommand], acknowledged: Int) -> [QemuIOCommand] {
    var reported = 0
    var lastAckedIndex = -1
    for (i, c) in script.enumerated() where c.reports {
        if reported == acknowledged { break }
        reported += 1
        lastAckedIndex = i
    }
    var flushedUpTo = -1
    for (i, c) in script.enumerated() where i < lastAckedIndex {
        if case .flush = c.kind { flushedUpTo = i }
    }
    return script.enumerated().compactMap { i, c in
        guard i <= lastAckedIndex, c.verification != nil else { return nil }
        if case .write(_, true) = c.kind { return c }
        return i < flushedUpTo ? c : nil
    }
}
