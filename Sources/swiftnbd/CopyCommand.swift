#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
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
            + "Any failed request stops the copy with a non-zero exit status. "
            + "With --dirty-bitmap NAME only the extents the source's qemu:dirty-bitmap:NAME marks dirty are copied, into an existing DST written in place or a new qcow2 overlay of the previous backup (--backing FILE), so full + incrementals form a plain qcow2 chain.")

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

    @Option(name: .customLong("dirty-bitmap"), help: ArgumentHelp(
        "Copy only what the NBD source's qemu:dirty-bitmap:NAME marks dirty (dirty zero runs are written as zeroes), into DST written in place: an existing image or overlay, or a new qcow2 overlay with --backing.",
        valueName: "name"))
    var dirtyBitmap: String?

    @Option(help: ArgumentHelp("With --dirty-bitmap: create DST as a new qcow2 overlay of this image (the previous backup).", valueName: "file"))
    var backing: String?

    @Flag(help: "Print what was moved when done: bytes read, written, zeroed and skipped as clean, and the time.")
    var stats = false

    func validate() throws {
        guard connections >= 1, connections <= 64 else { throw ValidationError("--connections must be between 1 and 64") }
        guard requests >= 1, requests <= 1024 else { throw ValidationError("--requests must be between 1 and 1024") }
        guard requestSize >= 512, requestSize <= 32 << 20 else { throw ValidationError("--request-size must be between 512 and 33554432") }
        if backing != nil && dirtyBitmap == nil {
            throw ValidationError("--backing makes an incremental overlay: it needs --dirty-bitmap")
        }
        if dirtyBitmap != nil && outputFormat != .auto {
            throw ValidationError("--dirty-bitmap writes into DST in place (or a new qcow2 overlay): --output-format does not apply")
        }
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
        let job = CopyJob(source: source, destination: destination, outputFormat: outputFormat,
                          dirtyBitmap: dirtyBitmap, backing: backing, connections: connections, requests: requests,
                          requestSize: requestSize, flush: flush, verify: verify, sparse: !noSparse,
                          cache: try qcow2Cache.options(), progressBar: progress ?? (isatty(STDERR_FILENO) != 0),
                          progressFD: progressFD)
        let outcome = try job.run()
        if stats {
            let s = outcome.statistics
            let rate = Double(s.bytesRead) / max(outcome.seconds, 0.000_001) / 1_048_576
            print("size \(outcome.size) read \(s.bytesRead) written \(s.bytesWritten) zeroed \(s.bytesZeroed) "
                + "skipped \(s.bytesSkipped) seconds \(String(format: "%.3f", outcome.seconds)) read-MiB/s \(String(format: "%.1f", rate))")
        }
    }
}

/// Ends `copy` with exit status 1 and one line on stderr.
struct CopyExit: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
