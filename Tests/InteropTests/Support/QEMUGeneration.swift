import Foundation
import Testing

/// One generation of QEMU's tools as a peer. The interop cases that involve QEMU take this as a
/// test argument and run once per generation:
/// - Debian 12's own QEMU 7.2 (on PATH), which predates 64-bit extended headers, so it
///   negotiates structured replies;
/// - today's QEMU from bookworm-backports (10.x), unpacked beside it by
///   scripts/lib/install-qemu-backports.sh, which negotiates extended headers with swiftnbd
///   in both directions.
struct QEMUGeneration: Sendable, Hashable, CustomTestStringConvertible {
    /// "7.2" or "10": what test names and messages show.
    let name: String
    /// Where its binaries are; nil for the system's, found on PATH.
    let binDirectory: String?
    /// Whether it asks for (as a client) and offers (as qemu-nbd) NBD_OPT_EXTENDED_HEADERS.
    let speaksExtendedHeaders: Bool

    static let debian = QEMUGeneration(name: "7.2", binDirectory: nil, speaksExtendedHeaders: false)
    static let backports = QEMUGeneration(
        name: "10", binDirectory: "\(ProcessInfo.processInfo.environment["SWIFTNBD_QEMU_BACKPORTS"] ?? "/opt/swiftnbd-peers/qemu-backports")/bin",
        speaksExtendedHeaders: true)

    /// The generations to test against: both under CI (where a missing one must fail, not
    /// vanish), otherwise those installed.
    static var all: [QEMUGeneration] {
        [debian, backports].filter { Peers.inCI || $0.isInstalled }
    }

    var testDescription: String { "QEMU \(name)" }

    /// The command to run `tool` (qemu-img, qemu-io, qemu-nbd, qemu-storage-daemon,
    /// qemu-system-x86_64) of this generation.
    func tool(_ tool: String) -> String {
        binDirectory.map { "\($0)/\(tool)" } ?? tool
    }
    var img: String { tool("qemu-img") }
    var io: String { tool("qemu-io") }
    var nbd: String { tool("qemu-nbd") }
    var storageDaemon: String { tool("qemu-storage-daemon") }
    var system: String { tool("qemu-system-x86_64") }

    /// PATH with this generation's binaries first, for commands that start QEMU tools by name
    /// (`swiftnbd migrate --export-server qemu-nbd`).
    var pathEnvironment: [String: String] {
        guard let binDirectory else { return [:] }
        return ["PATH": binDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")]
    }

    var isInstalled: Bool {
        guard let binDirectory else { return Peers.path(of: "qemu-img") != nil }
        return FileManager.default.isExecutableFile(atPath: "\(binDirectory)/qemu-img")
    }

    /// The reply form swiftnbd's server logs for a transmission phase with this generation as
    /// its client ("transmission on 'NAME' (extended, …)"), i.e. proof from the wire of what was
    /// negotiated.
    var serverLogReplyForm: String { speaksExtendedHeaders ? "(extended" : "(structured" }

    /// What `swiftnbd info` prints on its "negotiated:" line against this generation's qemu-nbd.
    var clientNegotiatedLine: String {
        speaksExtendedHeaders ? "negotiated: extended headers" : "negotiated: structured replies"
    }
}

/// Runs `qemu-img ARGUMENTS` (an oracle: check, compare, info) with every QEMU generation, so a
/// qcow2 image swiftnbd wrote must satisfy QEMU 7.2 and 10 alike. Returns the first failing
/// result, its stderr prefixed with the generation, or else the last result.
func qemuImgEveryGeneration(_ arguments: [String], timeout: Double = 120) throws -> RunResult {
    var last: RunResult?
    for qemu in QEMUGeneration.all {
        var result = try run([qemu.img] + arguments, timeout: timeout)
        if !result.succeeded {
            result.stderr = "[\(qemu.testDescription)] " + result.stderr
            return result
        }
        last = result
    }
    guard let last else { throw FixtureFailure("no QEMU generation is installed") }
    return last
}
