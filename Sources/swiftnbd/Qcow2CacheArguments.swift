import ArgumentParser
import Qcow2

/// `--cache-size`, `--l2-cache-size` and `--refcount-cache-size`, shared by every command that
/// opens qcow2 images (`serve`, `copy`, `migrate`). Named after QEMU's qcow2 options.
struct Qcow2CacheArguments: ParsableArguments {
    @Option(name: .customLong("cache-size"), help: ArgumentHelp("""
        qcow2 metadata cache per image, L2 and refcount together (e.g. 64M); split as \
        --l2-cache-size and --refcount-cache-size unless they are given.
        """, valueName: "size"))
    var total: String?

    @Option(name: .customLong("l2-cache-size"), help: ArgumentHelp("""
        qcow2 L2-table cache per image (default 128M: a 1 TiB image with 64 KiB clusters \
        mapped without metadata reads; 8 bytes per cluster mapped). Held in 4 KiB slices, at \
        least 4.
        """, valueName: "size"))
    var l2: String?

    @Option(name: .customLong("refcount-cache-size"), help: ArgumentHelp("qcow2 refcount cache per image (default 4M).", valueName: "size"))
    var refcount: String?

    func validate() throws { _ = try options() }

    /// The cache sizes asked for.
    func options() throws -> Qcow2CacheOptions {
        var result = Qcow2CacheOptions.default
        if let total { result = Qcow2CacheOptions(totalBytes: try Self.size(total, "--cache-size")) }
        if let l2 { result.l2CacheBytes = try Self.size(l2, "--l2-cache-size") }
        if let refcount { result.refcountCacheBytes = try Self.size(refcount, "--refcount-cache-size") }
        return result
    }

    /// The same options as command-line arguments (for a `swiftnbd serve` child).
    var arguments: [String] {
        [("--cache-size", total), ("--l2-cache-size", l2), ("--refcount-cache-size", refcount)]
            .flatMap { name, value in value.map { [name, $0] } ?? [] }
    }

    private static func size(_ text: String, _ option: String) throws -> UInt64 {
        guard let bytes = Qcow2CacheOptions.parseSize(text) else {
            throw ValidationError("\(option) '\(text)' is not a size (bytes, or with K, M, G, T)")
        }
        return bytes
    }
}
