/// File names of QEMU's x509 credential directory (`tls-creds-x509,dir=…`), shared by
/// qemu-nbd, nbdkit and libnbd.
public enum QEMUCredentialLayout {
    public static let caCertificate = "ca-cert.pem"
    public static let caKey = "ca-key.pem"
    public static let revocationList = "ca-crl.pem"
    public static let dhParameters = "dh-params.pem"
    public static let serverCertificate = "server-cert.pem"
    public static let serverKey = "server-key.pem"
    public static let clientCertificate = "client-cert.pem"
    public static let clientKey = "client-key.pem"
    /// QEMU's `tls-creds-psk` key file name.
    public static let pskKeys = "keys.psk"

    static func path(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }
}
