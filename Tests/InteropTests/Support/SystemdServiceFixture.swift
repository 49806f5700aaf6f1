import Foundation

/// The units and example config as scripts/install.sh installs them, plus what a service needs
/// to run without systemd: the paths the units name (/etc/swiftnbd, /var/lib/swiftnbd,
/// /run/swiftnbd) are moved under a scratch `root`, and x509 credentials from
/// `swiftnbd certs create` sit in root/etc/swiftnbd/tls (server files only, mode 0700).
final class SystemdServiceFixture {
    let scratch = TempDir("systemd-service")
    let prefix: String
    let root: String
    let credentials: TLSCredentials

    init() throws {
        prefix = scratch.file("prefix")
        root = scratch.file("root")
        try InstallScript.install(prefix: prefix)
        credentials = try TLSCredentials(label: "systemd")
        for dir in [Self.configDirectory, Self.imageDirectory, "/run/swiftnbd"] {
            try FileManager.default.createDirectory(atPath: mapped(dir), withIntermediateDirectories: true)
        }
        try installServerCredentials(from: credentials.directory)
    }

    static let configDirectory = "/etc/swiftnbd"
    static let imageDirectory = "/var/lib/swiftnbd"
    static let tlsDirectory = "/etc/swiftnbd/tls"

    /// `path` as the units name it, moved under `root`.
    func mapped(_ path: String) -> String { root + path }

    func unit(_ name: String) throws -> SystemdUnitFile {
        try SystemdUnitFile(path: "\(prefix)/lib/systemd/system/\(name)")
    }

    /// The installed example EnvironmentFile, its paths moved under `root`.
    func exampleConfig() throws -> String {
        let text = try String(contentsOfFile: "\(prefix)/share/doc/swiftnbd/examples/swiftnbd.conf", encoding: .utf8)
        return text.replacingOccurrences(of: Self.imageDirectory, with: mapped(Self.imageDirectory))
            .replacingOccurrences(of: Self.tlsDirectory, with: mapped(Self.tlsDirectory))
    }

    /// Replaces the server credentials in the TLS directory (ca-cert, server cert and key),
    /// as an administrator renewing them would.
    func installServerCredentials(from pki: String) throws {
        let tls = mapped(Self.tlsDirectory)
        try FileManager.default.createDirectory(atPath: tls, withIntermediateDirectories: true)
        for file in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
            let target = "\(tls)/\(file)"
            try? FileManager.default.removeItem(atPath: target)
            try FileManager.default.copyItem(atPath: "\(pki)/\(file)", toPath: target)
        }
        chmod(tls, 0o700)
    }

    /// The argv `service` runs for `instance`: EnvironmentFile= (read from under `root`,
    /// where the test wrote it) expanded into ExecStart=.
    func execStart(service: String, instance: String = "") throws -> (argv: [String], environmentFile: String) {
        let unit = try unit(service)
        let environmentFile = SystemdSyntax.expandSpecifiers(try unit.value("EnvironmentFile", in: "Service"), instance: instance)
        let text = try String(contentsOfFile: mapped(environmentFile), encoding: .utf8)
        let environment = SystemdSyntax.parseEnvironmentFile(text)
        let argv = SystemdSyntax.commandLine(try unit.value("ExecStart", in: "Service"), environment: environment)
        return (argv, environmentFile)
    }

    /// The unit's ExecReload= for a server with main PID `pid`, run as systemctl reload would.
    func reload(service: String, mainPID pid: pid_t) throws -> RunResult {
        let line = try unit(service).value("ExecReload", in: "Service")
        return try run(SystemdSyntax.commandLine(line, environment: ["MAINPID": String(pid)]))
    }

    /// Writes `text` to `path` (a unit path such as /etc/swiftnbd/vm1.conf), under `root`.
    func write(_ text: String, to path: String) throws {
        try text.write(toFile: mapped(path), atomically: true, encoding: .utf8)
    }
}
