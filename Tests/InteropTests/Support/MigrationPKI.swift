import Foundation

/// Test certificates in QEMU's x509 directory layout, made with certtool:
/// `ca-cert.pem server-cert.pem server-key.pem client-cert.pem client-key.pem`, CN=localhost
/// with SANs localhost, 127.0.0.1 and ::1 (docs/migration.md §6).
///
/// `foreignClient` is for the negative test: a client certificate from an unrelated CA. Its
/// `ca-cert.pem` bundles both CAs, because QEMU checks its *own* certificate against its
/// ca-cert.pem when the creds load and would refuse locally otherwise (docs/migration.md §6);
/// the server is then the only one that can refuse it.
final class MigrationPKI: @unchecked Sendable {
    let root: TempDir
    /// The trusted PKI: server and client certificates from one CA.
    let trusted: String
    /// Client credentials signed by another CA, trusting both CAs.
    let foreignClient: String

    /// Made once per test process: key generation is slow and the certificates are read-only.
    static let shared: Result<MigrationPKI, Error> = Result { try MigrationPKI() }

    init() throws {
        root = TempDir("migration-pki")
        trusted = root.file("trusted")
        foreignClient = root.file("foreign-client")
        let other = root.file("other-ca")
        for dir in [trusted, foreignClient, other] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try Self.makeCA(in: trusted, name: "SwiftNBD migration test CA")
        try Self.issue(in: trusted, role: "server", caDir: trusted)
        try Self.issue(in: trusted, role: "client", caDir: trusted)
        try Self.makeCA(in: other, name: "Unrelated test CA")
        try Self.issue(in: other, role: "client", caDir: other)
        for file in ["client-cert.pem", "client-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(other)/\(file)", toPath: "\(foreignClient)/\(file)")
        }
        let bundle = try String(contentsOfFile: "\(trusted)/ca-cert.pem", encoding: .utf8)
            + String(contentsOfFile: "\(other)/ca-cert.pem", encoding: .utf8)
        try bundle.write(toFile: "\(foreignClient)/ca-cert.pem", atomically: true, encoding: .utf8)
    }

    private static func certtool(_ args: [String]) throws {
        let result = try run(["certtool"] + args, timeout: 60)
        guard result.succeeded else { throw MigrationTestFailure("certtool \(args.joined(separator: " ")) failed: \(result)") }
    }

    private static func makeCA(in dir: String, name: String) throws {
        try "cn = \"\(name)\"\nca\ncert_signing_key\nexpiration_days = 30\n"
            .write(toFile: "\(dir)/ca.info", atomically: true, encoding: .utf8)
        try certtool(["--generate-privkey", "--key-type", "ecdsa", "--outfile", "\(dir)/ca-key.pem"])
        try certtool(["--generate-self-signed", "--load-privkey", "\(dir)/ca-key.pem",
                      "--template", "\(dir)/ca.info", "--outfile", "\(dir)/ca-cert.pem"])
    }

    private static func issue(in dir: String, role: String, caDir: String) throws {
        let usage = role == "server" ? "tls_www_server" : "tls_www_client"
        let template = """
            organization = "SwiftNBD tests"
            cn = "localhost"
            dns_name = "localhost"
            ip_address = "127.0.0.1"
            ip_address = "::1"
            \(usage)
            encryption_key
            signing_key
            expiration_days = 30

            """
        try template.write(toFile: "\(dir)/\(role).info", atomically: true, encoding: .utf8)
        // RSA, not ECDSA: certtool drops `encryption_key` (keyEncipherment) for an ECDSA key,
        // and QEMU 10 refuses a server or client certificate whose critical key usage lacks it
        // ("usage does not permit key encipherment"); QEMU 7.2 accepted it.
        try certtool(["--generate-privkey", "--key-type", "rsa", "--bits", "2048", "--outfile", "\(dir)/\(role)-key.pem"])
        try certtool(["--generate-certificate", "--load-privkey", "\(dir)/\(role)-key.pem",
                      "--load-ca-certificate", "\(caDir)/ca-cert.pem", "--load-ca-privkey", "\(caDir)/ca-key.pem",
                      "--template", "\(dir)/\(role).info", "--outfile", "\(dir)/\(role)-cert.pem"])
    }
}
