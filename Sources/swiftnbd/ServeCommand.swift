import ArgumentParser

// Placeholder: replaced by the module that implements `swiftnbd serve`.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "(not yet available)")
    func run() throws { throw ValidationError("swiftnbd serve is not built yet") }
}
