import ArgumentParser

// Placeholder: replaced by the module that implements `swiftnbd migrate`.
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "migrate", abstract: "(not yet available)")
    func run() throws { throw ValidationError("swiftnbd migrate is not built yet") }
}
