#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NBDProtocol

/// An in-process NBD peer on a Unix socket that follows a script, for testing how the client
/// copes with a broken or hostile server. It negotiates honestly (configurable), then hands the
/// connection to the test's transmission script.
final class ScriptedServer: @unchecked Sendable {
    struct Options {
        var size: UInt64 = 1 << 20
        var flags: TransmissionFlags = [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendCache]
        var structured = true
        var extended = false
        var contexts: [(UInt32, String)] = [(1, "base:allocation")]
        var blockSizes: NBDBlockSizes? = NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 1 << 25)
    }

    let directory: String
    let path: String
    private let listener: Int32
    private let done = DispatchSemaphore(value: 0)
    private(set) var scriptError: Error?

    /// Starts listening and serves exactly one connection with `script` on a background thread.
    init(_ options: Options = Options(), script: @escaping @Sendable (Peer) throws -> Void) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nbd-scripted-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/s.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        listener = fd
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 4) == 0 else { throw POSIXError(.EADDRINUSE) }
        let listener = fd
        Thread.detachNewThread { [self] in
            let fd = accept(listener, nil, nil)
            if fd >= 0 {
                let peer = Peer(fd: fd)
                do {
                    try peer.negotiate(options)
                    try script(peer)
                } catch {
                    scriptError = error
                }
                peer.close()
            }
            done.signal()
        }
    }

    var uri: String { "nbd+unix:///?socket=\(path)" }

    /// Waits (bounded) for the script to end.
    func finish(timeout: Double = 10) -> Bool {
        let ok = done.wait(timeout: .now() + timeout) == .success
        Glibc.close(listener)
        try? FileManager.default.removeItem(atPath: directory)
        return ok
    }

    /// The server end of one connection.
    final class Peer: @unchecked Sendable {
        let fd: Int32
        var extended = false
        init(fd: Int32) { self.fd = fd }

        func write(_ bytes: [UInt8]) throws {
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { throw POSIXError(.EPIPE) }
                sent += n
            }
        }

        func read(_ count: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            var got = 0
            while got < count {
                let n = out[got...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { throw POSIXError(.ECONNRESET) }
                got += n
            }
            return out
        }

        func close() {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
        }

        func reply(_ option: NBDOption, _ type: NBDReplyType, _ payload: [UInt8] = []) throws {
            try write(OptionReply(option: option, replyType: type, payload: payload).bytes)
        }

        /// Honest fixed-newstyle negotiation up to GO.
        func negotiate(_ o: Options) throws {
            try write(NewstyleGreeting(handshakeFlags: [.fixedNewstyle, .noZeroes]).bytes)
            _ = try read(4)
            for _ in 0..<20 {
                let header = try OptionHeader(decoding: try read(16))
                let payload = try read(Int(header.length))
                switch header.option {
                case .extendedHeaders:
                    if o.extended { extended = true; try reply(header.option, .ack) } else { try reply(header.option, .errUnsupported) }
                case .structuredReply:
                    try reply(header.option, o.structured ? .ack : .errUnsupported)
                case .setMetaContext:
                    for (id, name) in o.contexts {
                        try reply(header.option, .metaContext, try MetaContextReplyPayload(contextID: id, name: name).encoded())
                    }
                    try reply(header.option, .ack)
                case .go:
                    _ = payload
                    try reply(.go, .info, try InfoReplyPayload.export(size: o.size, flags: o.flags).encoded())
                    if let b = o.blockSizes { try reply(.go, .info, try InfoReplyPayload.blockSize(b).encoded()) }
                    try reply(.go, .ack)
                    return
                default:
                    try reply(header.option, .errUnsupported)
                }
            }
        }

        /// Reads one request (compact or extended form) and its WRITE payload.
        func readRequest() throws -> NBDRequest {
            let form: NBDRequest.Form = extended ? .extended : .compact
            let request = try NBDRequest(decoding: try read(form.wireSize), form: form)
            let payload = request.payloadLength(form: form)
            if payload > 0 { _ = try read(Int(payload)) }
            return request
        }

        func simpleReply(cookie: UInt64, error: UInt32 = 0, data: [UInt8] = []) throws {
            try write(SimpleReplyHeader(error: NBDErrno(rawValue: error), cookie: cookie).bytes + data)
        }

        /// A structured chunk with an arbitrary (possibly lying) length field.
        func chunk(cookie: UInt64, type: UInt16, flags: ReplyFlags = [], payload: [UInt8], length: UInt32? = nil) throws {
            try write(StructuredChunkHeader(flags: flags, type: NBDChunkType(rawValue: type), cookie: cookie,
                                            length: length ?? UInt32(payload.count)).bytes + payload)
        }

        /// An extended (32-byte header) chunk with an arbitrary 64-bit length field.
        func extendedChunk(cookie: UInt64, offset: UInt64, type: UInt16, flags: ReplyFlags = [], payload: [UInt8], length: UInt64? = nil) throws {
            try write(ExtendedChunkHeader(flags: flags, type: NBDChunkType(rawValue: type), cookie: cookie, offset: offset,
                                          length: length ?? UInt64(payload.count)).bytes + payload)
        }

        static func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
        static func be32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
        static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }
    }
}
