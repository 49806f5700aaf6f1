import ArgumentParser
import NBDClient
import NBDProtocol

/// `swiftnbd info URI`: what an export is and what the server negotiated; `--list` for every
/// export, `--map` for its extents. Output mirrors nbdinfo's (text and `--json` field names).
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show an NBD export's size, flags, block sizes and negotiated features.",
        discussion: "URI forms: nbd://[user@]host[:port]/export, nbds://… (TLS required), "
            + "nbd+unix:///export?socket=PATH, nbds+unix:///export?socket=PATH; TLS keys: tls-certificates=DIR, "
            + "tls-psk-file=FILE, tls-verify-peer=BOOL, tls-hostname=NAME.")

    @Argument(help: "NBD URI of the export (or of the server, with --list).")
    var uri: String

    @Flag(name: [.customShort("L"), .long], help: "List all exports of the server with their descriptions.")
    var list = false

    @Flag(help: "Print the export's extents (base:allocation unless --map-context is given).")
    var map = false

    @Option(name: .customLong("map-context"), help: "Metadata context for --map, e.g. qemu:allocation-depth or qemu:dirty-bitmap:NAME.")
    var mapContext: String?

    @Flag(help: "Machine-readable output.")
    var json = false

    @Flag(name: .customLong("no-extended-headers"), help: "Do not ask for extended headers.")
    var noExtendedHeaders = false

    @Flag(name: .customLong("no-structured-replies"), help: "Ask for neither extended headers nor structured replies.")
    var noStructuredReplies = false

    func run() throws {
        let parsed = try NBDURI(uri)
        let configure: (inout NBDClientConfiguration) -> Void = { config in
            config.requestExtendedHeaders = !(noExtendedHeaders || noStructuredReplies)
            config.requestStructuredReplies = !noStructuredReplies
            config.listMetaContexts = !map
            config.metaContexts = map ? [mapContext ?? "base:allocation"] : ["base:allocation"]
        }
        if list {
            let (exports, tls) = try NBDConnection.listExports(parsed, configure: configure)
            print(json ? InfoFormatter.listJSON(exports, tls: tls, uri: parsed) : InfoFormatter.listText(exports, tls: tls, uri: parsed))
            return
        }
        let connection = try NBDConnection.connect(parsed, configure: configure)
        defer { connection.close() }
        if map {
            let context = mapContext ?? "base:allocation"
            let extents = try InfoMap.extents(connection, context: context)
            print(json ? InfoFormatter.mapJSON(extents, context: context) : InfoFormatter.mapText(extents, context: context), terminator: "")
            return
        }
        print(json ? InfoFormatter.exportJSON(connection.export, uri: parsed) : InfoFormatter.exportText(connection.export, uri: parsed))
    }
}
