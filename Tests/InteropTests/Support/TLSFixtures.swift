import Foundation

/// A credential directory made by `swiftnbd certs create`, plus client-side views of it.
struct TLSCredentials {
    let scratch: TempDir
    /// The full directory (CA, CA key, server, client, keys.psk with user alice).
    let directory: String
    var pskFile: String { "\(directory)/keys.psk" }
    var clientCN: String

    /// - Parameter extra: more `certs create` flags, e.g. `["--expired"]`.
    init(label: String = "tls", hostnames: [String] = ["localhost"], ips: [String] = ["127.0.0.1"],
         clientName: String = "interop-client", extra: [String] = []) throws {
        scratch = TempDir("swiftnbd-\(label)")
        directory = scratch.file("pki")
        clientCN = clientName
        var args = [Peers.swiftnbd, "certs", "create", directory, "--client-name", clientName, "--psk-user", "alice"]
        for name in hostnames { args += ["--hostname", name] }
        for ip in ips { args += ["--ip", ip] }
        let result = try run(args + extra, timeout: 60)
        guard result.succeeded else { throw FixtureError("swiftnbd certs create failed: \(result)") }
    }

    /// A client directory with ca-cert.pem and, unless `withClientCertificate` is false, the client pair.
    func clientDirectory(withClientCertificate: Bool = true, name: String = "client") throws -> String {
        let dir = scratch.file(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var files = ["ca-cert.pem"]
        if withClientCertificate { files += ["client-cert.pem", "client-key.pem"] }
        for file in files { try FileManager.default.copyItem(atPath: "\(directory)/\(file)", toPath: "\(dir)/\(file)") }
        return dir
    }

    /// A server directory (ca-cert.pem, server pair) for peers such as qemu-nbd and nbdkit.
    func serverDirectory(name: String = "server") throws -> String {
        let dir = scratch.file(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for file in ["ca-cert.pem", "server-cert.pem", "server-key.pem"] {
            try FileManager.default.copyItem(atPath: "\(directory)/\(file)", toPath: "\(dir)/\(file)")
        }
        return dir
    }

    /// A directory holding only keys.psk (QEMU's tls-creds-psk wants a directory).
    func pskDirectory(contents: String? = nil, name: String = "psk") throws -> String {
        let dir = scratch.file(name)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if let contents {
            try contents.write(toFile: "\(dir)/keys.psk", atomically: true, encoding: .utf8)
        } else {
            try FileManager.default.copyItem(atPath: pskFile, toPath: "\(dir)/keys.psk")
        }
        return dir
    }

    /// Revokes the client certificate: writes ca-crl.pem into `directory` with certtool.
    func revokeClientCertificate() throws {
        let template = scratch.file("crl.tmpl")
        try "crl_next_update = 30\ncrl_number = 1\n".write(toFile: template, atomically: true, encoding: .utf8)
        let result = try run(["certtool", "--generate-crl", "--load-ca-privkey", "\(directory)/ca-key.pem",
                              "--load-ca-certificate", "\(directory)/ca-cert.pem", "--load-certificate", "\(directory)/client-cert.pem",
                              "--template", template, "--outfile", "\(directory)/ca-crl.pem"])
        guard result.succeeded else { throw FixtureError("certtool --generate-crl failed: \(result)") }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// `--object` arguments for QEMU tools.
enum QEMUTLS {
    static func x509(dir: String, endpoint: String, id: String = "tls0", verifyPeer: Bool? = nil) -> String {
        var object = "tls-creds-x509,id=\(id),dir=\(dir),endpoint=\(endpoint)"
        if let verifyPeer { object += ",verify-peer=\(verifyPeer ? "on" : "off")" }
        return object
    }
    static func psk(dir: String, endpoint: String, username: String? = nil, id: String = "tls0") -> String {
        var object = "tls-creds-psk,id=\(id),dir=\(dir),endpoint=\(endpoint)"
        if let username { object += ",username=\(username)" }
        return object
    }
    /// qemu-img/qemu-io `--image-opts` for an NBD export over TCP with TLS.
    static func nbdImageOpts(port: Int, export: String, host: String = "127.0.0.1", tlsHostname: String? = nil) -> String {
        var opts = "driver=nbd,host=\(host),port=\(port),export=\(export),tls-creds=tls0"
        if let tlsHostname { opts += ",tls-hostname=\(tlsHostname)" }
        return opts
    }
}

/// Starts a server on 127.0.0.1:`port` with signals unblocked, so SIGTERM (and SIGHUP)
/// reach it: children inherit the spawning test thread's mask, which blocks nearly all.
func startTLSPeer(_ arguments: [String], port: Int, environment: [String: String] = [:]) throws -> ServerProcess {
    try withUnblockedSignals { try ServerProcess(arguments, listener: .tcp(host: "127.0.0.1", port: port), environment: environment) }
}

/// As `startTLSPeer`, for a server listening on a Unix socket.
func startTLSPeer(_ arguments: [String], unixSocket: String) throws -> ServerProcess {
    try withUnblockedSignals { try ServerProcess(arguments, listener: .unix(path: unixSocket)) }
}
