import ArgumentParser

@main
struct SwiftNBDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftnbd",
        abstract: "A TLS-first Network Block Device server, client and toolkit.",
        subcommands: [ServeCommand.self, InfoCommand.self, CopyCommand.self, CertsCommand.self, MigrateCommand.self, BackupCommand.self]
    )
}
