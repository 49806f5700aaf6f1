import ArgumentParser

// Placeholder: replaced by the module that implements `swiftnbd info`.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "(not yet available)")
    func run() throws { throw ValidationError("swiftnbd info is not built yet") }
}
