import Foundation

/// A `swiftnbd serve` process with TLS flags, on 127.0.0.1 and a free port, serving one
/// pattern-filled raw image (and optionally more exports).
final class TLSServe {
    let port: Int
    let image: String
    let process: ServerProcess
    static let imageSize = 4 << 20

    /// - Parameters:
    ///   - tls: the TLS flags, e.g. `["--tls-certificates", dir]`.
    ///   - exports: (name, file) pairs; the first export is `disk` on a fresh pattern image.
    init(_ scratch: TempDir, tls: [String], extraExports: [(String, String)] = [], seed: UInt64 = 9) throws {
        port = FreePort.next()
        image = scratch.file("served-\(UUID().uuidString.prefix(6)).raw")
        try makePatternFile(image, size: Self.imageSize, seed: seed)
        let exports = [("disk", image)] + extraExports
        process = try startTLSPeer(Self.arguments(port: port, exports: exports) + tls, port: port)
    }

    /// The one place that knows `swiftnbd serve`'s export and listen flags.
    static func arguments(port: Int, exports: [(String, String)]) -> [String] {
        var args = [Peers.swiftnbd, "serve", "--bind", "127.0.0.1", "--port", "\(port)"]
        for (name, file) in exports { args += ["--export", "\(name)=\(file)"] }
        return args
    }

    var log: String { process.log }
    func stop() { process.stop() }
}
