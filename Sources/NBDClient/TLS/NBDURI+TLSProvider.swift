/// A URI that asks for TLS (`nbds://`, `tls-*` keys) builds its GnuTLS provider here.
extension NBDURI: ClientTLSProviderFactory {
    public func makeTLSProvider() throws -> any ClientTLSProvider {
        try GnuTLSClientTLSProvider(uri: self)
    }
}
