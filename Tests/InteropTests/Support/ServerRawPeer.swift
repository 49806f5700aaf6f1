import Foundation
import NBDProtocol

/// A hand-driven NBD client over a plain TCP socket, for malformed-input tests against the
/// built server: it writes exactly the bytes a test asks for and parses replies with the
/// NBDProtocol codecs. Every read has a 10 s timeout.
final class ServerRawPeer: @unchecked Sendable {
    let fd: Int32

    struct Failure: Error, CustomStringConvertible { var description: String }

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        if !ok {
            Glibc.close(fd)
            throw Failure(description: "connect to 127.0.0.1:\(port) failed (errno \(errno))")
        }
    }

    deinit { Glibc.close(fd) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw Failure(description: "send failed (errno \(errno))") }
            sent += n
        }
    }

    func read(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n == 0 { throw Failure(description: "server closed after \(done) of \(count) bytes") }
            if n < 0 { throw Failure(description: "recv failed (errno \(errno))") }
            done += n
        }
        return bytes
    }

    /// True when the server closed the connection (EOF) within the timeout.
    func closedByServer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    func greet(clientFlags: UInt32 = 3) throws {
        let greeting = try read(18)
        guard greeting.prefix(8).elementsEqual("NBDMAGIC".utf8) else { throw Failure(description: "bad greeting") }
        try send([UInt8(clientFlags >> 24 & 0xff), UInt8(clientFlags >> 16 & 0xff), UInt8(clientFlags >> 8 & 0xff), UInt8(clientFlags & 0xff)])
    }

    /// Sends raw option bytes and reads replies until a final one.
    func optionReplies(_ raw: [UInt8]) throws -> [(OptionReplyHeader, [UInt8])] {
        try send(raw)
        var replies: [(OptionReplyHeader, [UInt8])] = []
        for _ in 0..<100 {
            let header = try OptionReplyHeader(decoding: try read(OptionReplyHeader.wireSize))
            replies.append((header, try read(Int(header.length))))
            if header.replyType == .ack || header.replyType.isError { break }
        }
        return replies
    }

    func option(_ option: NBDOption, _ payload: [UInt8] = []) throws -> [(OptionReplyHeader, [UInt8])] {
        try optionReplies(try OptionRequest(option: option, payload: payload).encoded())
    }

    /// Greets and enters transmission with GO (simple replies unless `structured`).
    func go(export name: String = "", structured: Bool = false) throws {
        try greet()
        if structured { _ = try option(.structuredReply) }
        let replies = try option(.go, try InfoRequestPayload(exportName: name).encoded())
        guard replies.last?.0.replyType == .ack else { throw Failure(description: "GO refused: \(replies.map(\.0.replyType))") }
    }

    func request(_ request: NBDRequest, payload: [UInt8] = []) throws {
        try send(try request.encoded(form: .compact) + payload)
    }

    func simpleReply() throws -> SimpleReplyHeader {
        try SimpleReplyHeader(decoding: try read(SimpleReplyHeader.wireSize))
    }
}
