import ArgumentParser

// Placeholder: replaced by the module that implements `swiftnbd copy`.
struct CopyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "copy", abstract: "(not yet available)")
    func run() throws { throw ValidationError("swiftnbd copy is not built yet") }
}
