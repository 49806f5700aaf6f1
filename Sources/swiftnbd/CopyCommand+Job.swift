#if canImport(Glibc)
import Glibc
#endif
import BlockDevices
import Foundation
import NBDClient
import Qcow2

/// One copy, as `copy` runs it and as `backup` runs it for each disk: opens both sides, picks
/// the engine, copies, optionally flushes and verifies, and says what it moved.
struct CopyJob {
    var source: String
    var destination: String
    var outputFormat: CopyOutputFormat = .auto
    /// Copy only what this bitmap of the (NBD) source marks dirty, into a destination written
    /// in place (see `IncrementalDestination`).
    var dirtyBitmap: String?
    /// With `dirtyBitmap`: create `destination` as a qcow2 overlay of this image.
    var backing: String?
    var connections = 4
    var requests = 64
    var requestSize = 1 << 20
    var flush = false
    var verify = false
    var sparse = true
    var cache: Qcow2CacheOptions = .default
    var progressBar = false
    var progressFD: Int32?

    struct Outcome {
        var size: UInt64
        var statistics: CopyStatistics
        var seconds: Double
    }

    func run() throws -> Outcome {
        let src: CopyEndpoint
        var bitmapMap: DirtyBitmapExtentMap?
        if let dirtyBitmap {
            guard NBDURI.looksLikeURI(source) else {
                throw CopyFailure("--dirty-bitmap needs an NBD source (a dirty bitmap is read over NBD as qemu:dirty-bitmap:\(dirtyBitmap))")
            }
            let remote = try RemoteExport.open(try NBDURI(source), connections: connections) {
                $0.maximumInFlight = requests
                $0.metaContexts = ["base:allocation", DirtyBitmapExtentMap.contextName(dirtyBitmap)]
            }
            do {
                bitmapMap = try DirtyBitmapExtentMap(source: remote, bitmap: dirtyBitmap, label: source)
            } catch {
                try? remote.close()
                throw error
            }
            src = CopyEndpoint(device: remote, label: source, knownZero: false, connections: remote.connections.count)
        } else {
            src = try CopyEndpoint.openSource(source, connections: connections, requests: requests, cache: cache)
        }
        defer { try? src.device.close() }
        let size = src.device.size
        let dst: CopyEndpoint
        var createdOverlay: String?
        if dirtyBitmap != nil {
            (dst, createdOverlay) = try IncrementalDestination.open(destination, size: size, backing: backing,
                                                                    connections: connections, requests: requests, cache: cache)
        } else {
            dst = try CopyEndpoint.openDestination(destination, size: size, format: outputFormat,
                                                   connections: connections, requests: requests, cache: cache)
        }
        var dstClosed = false
        defer { if !dstClosed { try? dst.device.close() } }
        do {
            let outcome = try copy(src, dst, size: size, extentMap: bitmapMap)
            dstClosed = true
            try dst.device.close()
            return outcome
        } catch {
            // A new overlay we made is useless half-written; the image under it was only read.
            if let createdOverlay {
                dstClosed = true
                try? dst.device.close()
                unlink(createdOverlay)
            }
            throw error
        }
    }

    private func copy(_ src: CopyEndpoint, _ dst: CopyEndpoint, size: UInt64, extentMap: CopyExtentMap?) throws -> Outcome {
        let maxPayload = Int(min(src.device.blockSizes.maximumPayload, dst.device.blockSizes.maximumPayload))
        let pieceSize = max(512, min(requestSize, maxPayload))
        // Blocking workers: each has one request out at a time, so workers bound the requests in
        // flight. Beyond 4 per connection, more threads only add contention (measured: writes to one local file slow down with 32+ writers).
        let perConnection = min(requests, 4)
        let workers = max(1, max(src.connections, dst.connections) * perConnection)
        let meter = CopyProgress(total: size)
        let statistics = CopyStatistics()
        meter.start(bar: progressBar, machineFD: progressFD)
        let pageCache = dst.localRawPath.flatMap { PageCacheDropper(path: $0) }
        let run: () throws -> Void
        if let remote = src.device as? RemoteExport {
            // NBD source: READs go through the pipelined callback API, `requests` per connection.
            let copier = PipelinedCopier(source: remote, destination: dst.device, destinationIsZero: dst.knownZero, size: size,
                                         requestSize: pieceSize, requestsPerConnection: requests,
                                         writers: 4 * dst.connections, sparse: sparse, progress: meter,
                                         statistics: statistics, extentMap: extentMap)
            copier.pageCache = pageCache
            run = copier.run
        } else {
            let copier = BlockCopier(source: src.device, destination: dst.device, destinationIsZero: dst.knownZero, size: size,
                                     requestSize: pieceSize, workers: workers, sparse: sparse, progress: meter,
                                     statistics: statistics, extentMap: extentMap)
            copier.pageCache = pageCache
            run = copier.run
        }
        do {
            try run()
        } catch {
            meter.stop(drawFinal: false)
            if progressBar { fputs("\n", stderr) }
            throw error
        }
        if flush { try dst.device.flush() }
        meter.stop(drawFinal: true)
        let seconds = meter.elapsedSeconds
        if verify {
            try CopyVerifier.verify(src.device, dst.device, size: size, requestSize: pieceSize, workers: workers)
        }
        return Outcome(size: size, statistics: statistics, seconds: seconds)
    }
}

/// The destination of an incremental copy: written in place, never truncated or recreated,
/// because what the bitmap calls clean must keep the previous backup's contents.
enum IncrementalDestination {
    /// Returns the endpoint and, when this call created a new overlay, its path.
    static func open(_ spec: String, size: UInt64, backing: String?, connections: Int, requests: Int,
                     cache: Qcow2CacheOptions) throws -> (CopyEndpoint, String?) {
        if NBDURI.looksLikeURI(spec) {
            if backing != nil { throw CopyFailure("--backing creates a local qcow2 overlay; \(spec) is an NBD export") }
            var endpoint = try CopyEndpoint.openDestination(spec, size: size, format: .auto, connections: connections,
                                                            requests: requests, cache: cache)
            endpoint.knownZero = false
            return (endpoint, nil)
        }
        if spec == "null:" { return (CopyEndpoint(device: NullDevice(size: size), label: spec, knownZero: true, connections: 1), nil) }
        let exists = LocalImage.fileType(spec) != nil
        if let backing {
            if exists {
                throw CopyFailure("\(spec) already exists; --backing creates a new overlay (to write into an existing image or overlay, leave --backing out)")
            }
            try createOverlay(spec, over: backing, size: size)
            do {
                let image = try Qcow2Image(path: spec, readOnly: false, cache: cache)
                return (CopyEndpoint(device: image, label: spec, knownZero: false, connections: 1), spec)
            } catch {
                unlink(spec)
                throw error
            }
        }
        guard exists else {
            throw CopyFailure("\(spec) does not exist: an incremental copy writes into the previous backup, or into a new overlay of it with --backing FILE")
        }
        let device = try LocalImage.open(spec, writable: true, cache: cache)
        guard device.size == size else {
            try? device.close()
            throw CopyFailure("\(spec) has \(device.size) bytes but the source has \(size): a resized disk needs a full copy")
        }
        return (CopyEndpoint(device: device, label: spec, knownZero: false, connections: 1), nil)
    }

    /// A new qcow2 image whose backing file is `backing` (qcow2 or raw, by its magic). The name
    /// stored is the bare file name when both sit in one directory (so a backup directory can
    /// be moved as a whole), else an absolute path.
    static func createOverlay(_ path: String, over backing: String, size: UInt64) throws {
        guard LocalImage.fileType(backing) != nil else { throw CopyFailure("backing image \(backing) does not exist") }
        let backingDevice = try LocalImage.open(backing, writable: false)
        let backingSize = backingDevice.size
        try? backingDevice.close()
        guard backingSize == size else {
            throw CopyFailure("backing image \(backing) has \(backingSize) bytes but the source has \(size): a resized disk needs a full copy")
        }
        let format = Qcow2Image.hasQcow2Magic(path: backing) ? "qcow2" : "raw"
        let overlayDirectory = absolute(URL(fileURLWithPath: path).deletingLastPathComponent().path)
        let backingURL = URL(fileURLWithPath: absolute(backing))
        let stored = backingURL.deletingLastPathComponent().path == overlayDirectory ? backingURL.lastPathComponent : backingURL.path
        try Qcow2Creator.create(at: path, options: Qcow2CreateOptions(size: size, backingFile: stored, backingFormat: format))
    }

    private static func absolute(_ path: String) -> String {
        let url = path.hasPrefix("/") ? URL(fileURLWithPath: path)
            : URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(path)
        return url.standardizedFileURL.path
    }
}
