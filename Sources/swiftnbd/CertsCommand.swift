import ArgumentParser

/// `swiftnbd certs`: create and check x509/PSK credentials in QEMU's directory layout.
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create and check TLS credentials (QEMU's x509 directory layout, psktool key files).",
        subcommands: [CertsCreateCommand.self, CertsCheckCommand.self]
    )
}

/// A failure of `swiftnbd certs` reported as one line, without the usage text.
struct CertsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
