import ArgumentParser
import BlockDevices
import Foundation
import Logging
import NBDProtocol
import NBDServer

/// `swiftnbd serve`: export disk images over NBD, with qemu-nbd's defaults
/// (port 10809, export name "").
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve disk images over NBD.",
        discussion: """
            One image:      swiftnbd serve disk.img --name disk --port 10809
            Several images: swiftnbd serve --export disk=/images/a.img,desc=System disk \\
                                           --export data=/images/b.img,ro
            --export takes NAME=PATH[,ro][,tls-only][,format=FMT][,bitmap=NAME]...[,desc=TEXT]; desc= must be last \
            (the rest of the value, commas included, is the description). IMAGE/--name/--description \
            add one more export. An empty name in a client's request selects the first export.

            Listens on TCP (all addresses, or --bind ADDR) unless --unix PATH is given; under \
            systemd socket activation (LISTEN_FDS) it serves the inherited sockets instead. \
            SIGINT/SIGTERM: stop accepting, finish requests in flight, flush, exit 0.
            SIGHUP: reload TLS credentials.
            --metrics ADDR:PORT serves Prometheus metrics at http://ADDR:PORT/metrics \
            (docs/metrics.md).
            """)

    @Argument(help: "Image file or block device to serve.")
    var image: String?

    @Option(name: [.customShort("x"), .long], help: "Export name of IMAGE.")
    var name: String = ""

    @Option(name: [.customShort("D"), .long], help: "Description of IMAGE's export (shown by nbdinfo --list).")
    var description: String?

    @Option(name: [.customShort("e"), .customLong("export")], help: "Add an export: NAME=PATH[,ro][,tls-only][,format=FMT][,desc=TEXT] (repeatable).")
    var exports: [String] = []

    @Option(name: [.short, .long], help: "TCP port.")
    var port: Int = 10809

    @Option(name: [.customShort("b"), .long], help: "Address to bind (default: all local addresses, IPv4 and IPv6).")
    var bind: String?

    @Option(name: [.customShort("k"), .long], help: "Listen on this Unix socket instead of TCP.")
    var unix: String?

    @Option(name: [.customShort("B"), .customLong("bitmap")], help: ArgumentHelp(
        "Offer the qcow2 image's persistent dirty bitmap NAME as the metadata context qemu:dirty-bitmap:NAME (repeatable; for IMAGE's export, or the only --export; otherwise use bitmap=NAME in --export).",
        valueName: "name"))
    var bitmaps: [String] = []

    @Flag(name: [.customShort("r"), .long], help: "Refuse writes (all exports).")
    var readOnly = false

    @Option(name: [.short, .long], help: """
        Image format: \(ImageFormat.names) (default raw). auto picks qcow2 when the file starts \
        with the qcow2 magic: use it only for trusted images, never for disks a guest writes \
        (a guest could plant a qcow2 header naming host files as backing files).
        """)
    var format: String = "raw"

    @Flag(name: [.customShort("s"), .long], help: "Write to a temporary qcow2 overlay (deleted on exit) instead of the image, like qemu-nbd -s.")
    var snapshot = false

    @Option(name: .long, help: "Refuse connections beyond this many (1 also withdraws multi-conn).")
    var maxConnections: Int = 100

    @Option(name: .long, help: "Seconds a client may take to reach transmission; 0 = no limit.")
    var handshakeTimeout: Double = 10

    @Flag(name: .long, help: "Exit (after flushing) when the last client of a writable export disconnects.")
    var exitOnDisconnect = false

    @Flag(name: .shortAndLong, help: "Log every negotiated option and connection event; given twice (-vv), every request too.")
    var verbose: Int

    @Option(name: .long, help: ArgumentHelp(
        "Serve Prometheus metrics over HTTP at ADDR:PORT/metrics ([IPv6]:PORT, :PORT for all addresses, unix:PATH); off by default.",
        valueName: "addr:port"))
    var metrics: String?

    @OptionGroup var tls: TLSServerOptions

    @OptionGroup(title: "qcow2 metadata cache") var qcow2Cache: Qcow2CacheArguments

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxConnections >= 1 else { throw ValidationError("--max-connections must be at least 1") }
        guard handshakeTimeout >= 0, handshakeTimeout <= 3600 else {
            throw ValidationError("--handshake-timeout must be between 0 and 3600 seconds")
        }
        if image == nil && exports.isEmpty { throw ValidationError("give an IMAGE to serve, or --export NAME=PATH") }
        if image == nil && description != nil { throw ValidationError("--description describes IMAGE; with --export use desc=TEXT") }
        if image == nil && exports.count > 1 && !bitmaps.isEmpty {
            throw ValidationError("--bitmap applies to IMAGE or a single --export; with several exports use bitmap=NAME in --export")
        }
        if let metrics {
            do { _ = try ListenAddress(parsing: metrics) } catch { throw ValidationError("--metrics \(error)") }
        }
        for spec in exports {
            do { _ = try ExportSpec(parsing: spec) } catch let error as ExportSpec.ParseError {
                throw ValidationError(error.description)
            }
        }
    }

    func run() throws {
        Self.limitMallocArenas()
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .info
            return handler
        }
        var logger = Logger(label: "swiftnbd")
        logger.logLevel = verbose >= 2 ? .trace : verbose == 1 ? .debug : .info

        do {
            try serve(logger: logger)
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("swiftnbd: error: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func serve(logger: Logger) throws {
        let specs = try exportSpecs()
        let cache = try qcow2Cache.options()
        var opened: [ExportConfiguration] = []
        do {
            for spec in specs {
                let readOnly = readOnly || spec.readOnly
                let device = try openImage(path: spec.path, format: spec.format ?? format, readOnly: readOnly, snapshot: snapshot,
                                       cache: cache)
                let bitmaps: [ExportedDirtyBitmap]
                do {
                    bitmaps = try ServeBitmaps.exported(names: spec.bitmaps, spec: spec, device: device, writable: !readOnly,
                                                        snapshot: snapshot, logger: logger)
                } catch {
                    try? device.close()
                    throw error
                }
                opened.append(ExportConfiguration(name: spec.name, description: spec.description, device: device,
                                                  readOnly: readOnly, tlsOnly: spec.tlsOnly, dirtyBitmaps: bitmaps))
            }
        } catch {
            for export in opened { try? export.device.close() }
            throw error
        }

        // Before the server exists: it creates its metric handles from the bootstrapped backend.
        let metricsEndpoint = try metrics.map {
            PrometheusMetricsEndpoint(address: try ListenAddress(parsing: $0),
                                      exports: opened.map { ($0.name, $0.device as Any) }, logger: logger)
        }
        let provider = try tls.makeProvider()
        let configuration = ServerConfiguration(
            listenAddresses: try listenAddresses(), exports: opened,
            maxConnections: maxConnections, handshakeTimeout: handshakeTimeout,
            tlsMode: tls.effectiveMode.serverMode, tlsProvider: provider,
            exitOnDisconnect: exitOnDisconnect)
        let server: NBDServer
        do {
            server = try NBDServer(configuration: configuration, logger: logger)
        } catch {
            for export in opened { try? export.device.close() }
            throw error
        }

        // Installed before any server thread exists, so they inherit the unblocked mask.
        let shutdownRequested = ShutdownLatch()
        _ = try SignalWatcher { event in
            switch event {
            case let .terminate(signal):
                if shutdownRequested.firstTime() {
                    logger.info("signal \(signal): shutting down")
                    server.shutdown()
                } else {
                    logger.warning("signal \(signal) again: exiting now")
                    Foundation.exit(1)
                }
            case .reload:
                server.reloadCredentials()
            }
        }

        do {
            try metricsEndpoint?.start()
            try server.start()
        } catch {
            metricsEndpoint?.stop()
            for export in opened { try? export.device.close() }
            throw error
        }

        let addresses = server.boundAddresses.joined(separator: ", ")
        for export in opened {
            let mode = export.isWritable ? "" : " read-only"
            print("swiftnbd: serving '\(export.name)' (\(export.device.size) bytes\(mode)) on \(addresses)")
        }
        if let metricsEndpoint {
            print("swiftnbd: metrics on " + metricsEndpoint.urls.joined(separator: ", "))
        }
        fflush(stdout)
        server.waitUntilStopped()
        metricsEndpoint?.stop()
    }

    private func exportSpecs() throws -> [ExportSpec] {
        var specs: [ExportSpec] = []
        if let image {
            specs.append(ExportSpec(name: name, path: image, description: description))
        }
        for text in exports { specs.append(try ExportSpec(parsing: text)) }
        if !bitmaps.isEmpty, specs.count == 1 || image != nil { specs[0].bitmaps = bitmaps + specs[0].bitmaps }
        var seen = Set<String>()
        for spec in specs where !seen.insert(spec.name).inserted {
            throw ValidationError("export name '\(spec.name)' is given twice")
        }
        return specs
    }

    private func listenAddresses() throws -> [ListenAddress] {
        let activated = try SystemdSocketActivation.listenAddresses()
        if !activated.isEmpty { return activated }
        if let unix { return [.unix(path: unix)] }
        return [.tcp(host: bind, port: UInt16(port))]
    }
}

/// True the first time only: a second SIGTERM/SIGINT exits at once.
final class ShutdownLatch: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    func firstTime() -> Bool {
        lock.lock(); defer { lock.unlock() }
        defer { fired = true }
        return !fired
    }
}

extension TLSServerOptions.Mode {
    var serverMode: ServerTLSMode {
        switch self {
        case .off: .off
        case .on: .on
        case .require: .require
        }
    }
}
