#if canImport(Glibc)
import Glibc
#endif

/// Creates a complete test-or-production PKI in QEMU's directory layout: a CA, a server
/// certificate for the given names/addresses, a client certificate, and optionally a PSK
/// key file. Private keys are written with mode 0600.
public struct CredentialDirectoryBuilder: Sendable {
    public var hostnames: [String]
    public var ipAddresses: [String]
    public var clientName: String
    public var organization: String
    public var days: Int
    public var keyAlgorithm: PrivateKey.Algorithm
    /// PSK identities to write into keys.psk (32 random bytes each, as psktool does).
    public var pskUsers: [String]
    /// Validity override for the server and client certificates (testing: expired, not yet valid).
    public var leafValidity: (notBefore: Int, notAfter: Int)?
    public var overwrite: Bool

    public init(hostnames: [String], ipAddresses: [String] = [], clientName: String = "swiftnbd-client",
                organization: String = "SwiftNBD", days: Int = 365, keyAlgorithm: PrivateKey.Algorithm = .ecdsaP256,
                pskUsers: [String] = [], leafValidity: (notBefore: Int, notAfter: Int)? = nil, overwrite: Bool = false) {
        self.hostnames = hostnames
        self.ipAddresses = ipAddresses
        self.clientName = clientName
        self.organization = organization
        self.days = days
        self.keyAlgorithm = keyAlgorithm
        self.pskUsers = pskUsers
        self.leafValidity = leafValidity
        self.overwrite = overwrite
    }

    /// Writes the files; returns their paths.
    @discardableResult
    public func create(in directory: String) throws -> [String] {
        guard !hostnames.isEmpty || !ipAddresses.isEmpty else {
            throw TLSError(.invalidArgument, "the server certificate needs at least one hostname or IP address")
        }
        guard days > 0 || leafValidity != nil else { throw TLSError(.invalidArgument, "--days must be positive") }
        for address in ipAddresses { _ = try CertificateIssuer.ipBytes(address) }
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw TLSError(.io, "cannot create directory '\(directory)': \(String(cString: strerror(errno)))")
        }
        let L = QEMUCredentialLayout.self
        var names = [L.caCertificate, L.caKey, L.serverCertificate, L.serverKey, L.clientCertificate, L.clientKey]
        if !pskUsers.isEmpty { names.append(L.pskKeys) }
        let paths = names.map { L.path(directory, $0) }
        if !overwrite, let existing = paths.first(where: fileExists) {
            throw TLSError(.invalidArgument, "'\(existing)' already exists; refusing to overwrite it")
        }

        let now = Int(time(nil))
        let org = DistinguishedName.escape(organization)
        let caKey = try PrivateKey(generating: keyAlgorithm)
        // The CA outlives its leaves by a margin so renewing leaves does not need a new CA.
        let ca = try CertificateIssuer(kind: .authority, subject: "CN=\(org) CA,O=\(org)", days: days + 365, now: now).issue(for: caKey)

        func leaf(_ kind: CertificateKind, _ subject: String) throws -> (Certificate, PrivateKey) {
            let key = try PrivateKey(generating: keyAlgorithm)
            var issuer = CertificateIssuer(kind: kind, subject: subject, days: days, now: now)
            if let leafValidity {
                issuer.notBefore = leafValidity.notBefore
                issuer.notAfter = leafValidity.notAfter
            }
            return (try issuer.issue(for: key, issuer: (ca, caKey)), key)
        }
        let serverCN = DistinguishedName.escape(hostnames.first ?? ipAddresses[0])
        let (server, serverKey) = try leaf(.server(dnsNames: hostnames, ipAddresses: ipAddresses), "CN=\(serverCN),O=\(org)")
        let (client, clientKey) = try leaf(.client, "CN=\(DistinguishedName.escape(clientName)),O=\(org)")

        let publicMode: mode_t = 0o644, secretMode: mode_t = 0o600
        try writeWholeFile(L.path(directory, L.caCertificate), Array(try ca.pemEncoded().utf8), mode: publicMode)
        try writeWholeFile(L.path(directory, L.caKey), Array(try caKey.pemEncoded().utf8), mode: secretMode)
        try writeWholeFile(L.path(directory, L.serverCertificate), Array(try server.pemEncoded().utf8), mode: publicMode)
        try writeWholeFile(L.path(directory, L.serverKey), Array(try serverKey.pemEncoded().utf8), mode: secretMode)
        try writeWholeFile(L.path(directory, L.clientCertificate), Array(try client.pemEncoded().utf8), mode: publicMode)
        try writeWholeFile(L.path(directory, L.clientKey), Array(try clientKey.pemEncoded().utf8), mode: secretMode)
        if !pskUsers.isEmpty {
            let file = PSKKeyFile(entries: try pskUsers.map { PSKKeyFile.Entry(identity: $0, key: try randomBytes(32)) })
            try writeWholeFile(L.path(directory, L.pskKeys), Array(file.serialized().utf8), mode: secretMode)
        }
        return paths
    }
}
