import NBDTLS

/// The TLS session as the client engine sees it: TLS failures surface as
/// `NBDClientError(.tls)` (e.g. "the server rejected our client certificate" on the first
/// read after the handshake) instead of a foreign error type.
final class ClientTLSStream: ByteStream, @unchecked Sendable {
    let session: TLSSession

    init(_ session: TLSSession) { self.session = session }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        do { return try session.read(into: buffer) } catch let error as TLSError { throw NBDClientError(.tls, error.message) }
    }

    func write(_ parts: [UnsafeRawBufferPointer]) throws {
        do { try session.write(parts) } catch let error as TLSError { throw NBDClientError(.tls, error.message) }
    }

    func close() { session.close() }
}
