import ArgumentParser
import NBDTLS
#if canImport(Glibc)
import Glibc
#endif

/// `swiftnbd certs create DIR …`
struct CertsCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a CA, server and client certificates (and optionally keys.psk) in DIR.",
        discussion: """
        Writes ca-cert.pem, ca-key.pem, server-cert.pem, server-key.pem, client-cert.pem and \
        client-key.pem (plus keys.psk with --psk-user) in the layout qemu-nbd, QEMU's \
        tls-creds-x509/tls-creds-psk, nbdkit and libnbd read. Keys are written with mode 0600. \
        Keep ca-key.pem offline in production; the server needs ca-cert.pem, server-cert.pem \
        and server-key.pem, a client ca-cert.pem (+ client-cert.pem and client-key.pem).
        """
    )

    @Argument(help: "Directory to create the files in (created if missing).")
    var directory: String

    @Option(name: .customLong("hostname"), help: "DNS name for the server certificate (repeatable).")
    var hostnames: [String] = []

    @Option(name: .customLong("ip"), help: "IP address for the server certificate (repeatable).")
    var ipAddresses: [String] = []

    @Option(name: .customLong("client-name"), help: "Common name of the client certificate.")
    var clientName = "swiftnbd-client"

    @Option(help: "Organization in every subject.")
    var organization = "SwiftNBD"

    @Option(help: "Validity of the server and client certificates in days.")
    var days = 365

    @Option(name: .customLong("key-type"), help: "Key algorithm: ecdsa-p256 or rsa-3072.")
    var keyType = "ecdsa-p256"

    @Option(name: .customLong("psk-user"), help: "Also write keys.psk with a random key for this identity (repeatable).")
    var pskUsers: [String] = []

    @Flag(help: "Replace existing files.")
    var force = false

    @Flag(name: .customLong("expired"), help: .hidden)
    var expired = false

    @Flag(name: .customLong("not-yet-valid"), help: .hidden)
    var notYetValid = false

    func validate() throws {
        if hostnames.isEmpty && ipAddresses.isEmpty {
            throw ValidationError("give at least one --hostname or --ip for the server certificate")
        }
        if PrivateKey.Algorithm(rawValue: keyType) == nil {
            throw ValidationError("--key-type must be one of: \(PrivateKey.Algorithm.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if days <= 0 { throw ValidationError("--days must be positive") }
        if expired && notYetValid { throw ValidationError("--expired and --not-yet-valid exclude each other") }
        for user in pskUsers where user.isEmpty || user.contains(":") || user.contains("\n") {
            throw ValidationError("--psk-user '\(user)' must be non-empty and contain no ':' or newline")
        }
    }

    func run() throws {
        let now = Int(time(nil))
        var leafValidity: (notBefore: Int, notAfter: Int)?
        if expired { leafValidity = (now - (days + 1) * 86400, now - 86400) }
        if notYetValid { leafValidity = (now + 86400, now + (days + 1) * 86400) }
        let builder = CredentialDirectoryBuilder(
            hostnames: hostnames, ipAddresses: ipAddresses, clientName: clientName, organization: organization,
            days: days, keyAlgorithm: PrivateKey.Algorithm(rawValue: keyType)!, pskUsers: pskUsers,
            leafValidity: leafValidity, overwrite: force)
        do {
            let written = try builder.create(in: directory)
            for path in written { print("wrote \(path)") }
            let client = try Certificate.loadChain(fromFile: "\(directory)/\(QEMUCredentialLayout.clientCertificate)")[0]
            print("client certificate DN (for --tls-authz): \(client.subjectText)")
        } catch let error as TLSError {
            throw CertsError(error.message)
        }
    }
}
