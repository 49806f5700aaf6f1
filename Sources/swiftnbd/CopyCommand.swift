#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import BlockDevices
import NBDClient

/// `swiftnbd copy SRC DST`: device-to-device copy between NBD exports and local raw images.
struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy between NBD exports and local images, sparse-aware and pipelined.",
        discussion: "SRC and DST are NBD URIs (nbd://, nbds://, nbd+unix://, nbds+unix://) or local files (raw or qcow2); "
            + "DST may be null: to discard. A local raw destination file is created or truncated to the source size; an existing qcow2 destination is written in place; a destination named *.qcow2 (or --output-format qcow2) is created as a new qcow2 image. A destination another process has open for writing is refused. "
            + "Zero and unallocated ranges are skipped (or zeroed with WRITE_ZEROES / hole punching) instead of copied. "
            + "Any failed request stops the copy with a non-zero exit status.")

    @Argument(help: "Source: NBD URI or local image (raw or qcow2).")
    var source: String

    @Argument(help: "Destination: NBD URI, local file, or null:.")
    var destination: String

    @Option(name: .customLong("output-format"),
            help: "Local destination format: auto (existing qcow2 in place, *.qcow2 created as qcow2, else raw), raw or qcow2.")
    var outputFormat: CopyOutputFormat = .auto

    @Option(help: "Connections per NBD export (used when the server allows multi-conn).")
    var connections: Int = 4

    @Option(help: "READs in flight per connection from an NBD source (local sources use 4 worker threads per connection).")
    var requests: Int = 64

    @Option(name: .customLong("request-size"), help: "Bytes per READ/WRITE request.")
    var requestSize: Int = 1 << 20

    @Flag(help: "Flush the destination at the end.")
    var flush = false

    @Flag(inversion: .prefixedNo, help: "Show a progress bar (default: when stderr is a terminal).")
    var progress: Bool?

    @OptionGroup(title: "qcow2 metadata cache") var qcow2Cache: Qcow2CacheArguments

    @Option(name: .customLong("progress-fd"), help: "Also write progress as 'N/100' lines to this file descriptor.")
    var progressFD: Int32?

    @Flag(help: "Read both sides back after copying and compare them.")
    var verify = false

    @Flag(name: .customLong("no-sparse"), help: "Copy every byte: no extent queries, no zero detection.")
    var noSparse = false

    func validate() throws {
        guard connections >= 1, connections <= 64 else { throw ValidationError("--connections must be between 1 and 64") }
        guard requests >= 1, requests <= 1024 else { throw ValidationError("--requests must be between 1 and 1024") }
        guard requestSize >= 512, requestSize <= 32 << 20 else { throw ValidationError("--request-size must be between 512 and 33554432") }
        if let progressFD, progressFD < 0 || fcntl(progressFD, F_GETFD) < 0 {
            throw ValidationError("--progress-fd \(progressFD) is not an open file descriptor")
        }
    }

    func run() throws {
        do {
            try copy()
        } catch let error as CopyFailure {
            throw CopyExit(message: error.description)
        } catch let error as NBDClientError {
            throw CopyExit(message: error.description)
        } catch let error as BlockDeviceError {
            throw CopyExit(message: error.description)
        }
    }

    func copy() throws {
        let cache = try qcow2Cache.options()
        let src = try CopyEndpoint.openSource(source, connections: connections, requests: requests, cache: cache)
        defer { try? src.device.close() }
        let size = src.device.size
        let dst = try CopyEndpoint.openDestination(destination, size: size, format: outputFormat,
                                                   connections: connections, requests: requests, cache: cache)
        var dstClosed = false
        defer { if !dstClosed { try? dst.device.close() } }

        let maxPayload = Int(min(src.device.blockSizes.maximumPayload, dst.device.blockSizes.maximumPayload))
        let pieceSize = max(512, min(requestSize, maxPayload))
        // Blocking workers: each has one request out at a time, so workers bound the requests in
        // flight. Beyond 4 per connection, more threads only add contention (measured: writes to one local file slow down with 32+ writers).
        let perConnection = min(requests, 4)
        let workers = max(1, max(src.connections, dst.connections) * perConnection)
        let meter = CopyProgress(total: size)
        let showBar = progress ?? (isatty(STDERR_FILENO) != 0)
        meter.start(bar: showBar, machineFD: progressFD)
        let pageCache = dst.localRawPath.flatMap { PageCacheDropper(path: $0) }
        let run: () throws -> Void
        if let remote = src.device as? RemoteExport {
            // NBD source: READs go through the pipelined callback API, `requests` per connection.
            let copier = PipelinedCopier(source: remote, destination: dst.device, destinationIsZero: dst.knownZero, size: size,
                                         requestSize: pieceSize, requestsPerConnection: requests,
                                         writers: 4 * dst.connections, sparse: !noSparse, progress: meter)
            copier.pageCache = pageCache
            run = copier.run
        } else {
            let copier = BlockCopier(source: src.device, destination: dst.device, destinationIsZero: dst.knownZero, size: size,
                                     requestSize: pieceSize, workers: workers, sparse: !noSparse, progress: meter)
            copier.pageCache = pageCache
            run = copier.run
        }
        do {
            try run()
        } catch {
            meter.stop(drawFinal: false)
            if showBar { fputs("\n", stderr) }
            throw error
        }
        if flush { try dst.device.flush() }
        meter.stop(drawFinal: true)
        if verify {
            try CopyVerifier.verify(src.device, dst.device, size: size, requestSize: pieceSize, workers: workers)
        }
        dstClosed = true
        try dst.device.close()
    }
}

/// Ends `copy` with exit status 1 and one line on stderr.
struct CopyExit: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
