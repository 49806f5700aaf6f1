import ArgumentParser

// Placeholder: replaced by the module that implements `swiftnbd certs`.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "certs", abstract: "(not yet available)")
    func run() throws { throw ValidationError("swiftnbd certs is not built yet") }
}
