import Foundation
import NBDTLS

/// A hand-driven NBD client for TLS edge cases real clients never produce (pipelined
/// plaintext after STARTTLS, options negotiated before STARTTLS). Speaks bytes, big-endian.
final class RawNBDClient {
    static let nbdMagic: UInt64 = 0x4e42_444d_4147_4943
    static let ihaveopt: UInt64 = 0x4948_4156_454F_5054
    static let replyMagic: UInt64 = 0x0003_e889_0455_65a9
    static let simpleReplyMagic: UInt32 = 0x6744_6698
    static let structuredReplyMagic: UInt32 = 0x668e_33ef

    enum Option: UInt32 { case exportName = 1, abort = 2, list = 3, startTLS = 5, info = 6, go = 7, structuredReply = 8 }
    static let repAck: UInt32 = 1
    static let repErrTLSRequired: UInt32 = 0x8000_0005
    static let repErrPolicy: UInt32 = 0x8000_0002

    let socket: SocketStream
    /// The stream in use: the socket, then the TLS session.
    var stream: any ByteStream

    init(port: Int) throws {
        let fd = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard ok else { Glibc.close(fd); throw FixtureError("cannot connect to 127.0.0.1:\(port)") }
        // Bound every read: a test must never hang on a silent server.
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        socket = SocketStream(fd: fd)
        stream = socket
    }

    /// Reads the newstyle greeting and answers with FIXED_NEWSTYLE | NO_ZEROES.
    func greet() throws -> UInt16 {
        let greeting = try socket.readExactly(count: 18)
        guard Self.u64(greeting, 0) == Self.nbdMagic, Self.u64(greeting, 8) == Self.ihaveopt else {
            throw FixtureError("not a fixed newstyle greeting: \(greeting)")
        }
        try socket.write(Self.be32(3))
        return UInt16(greeting[16]) << 8 | UInt16(greeting[17])
    }

    static func optionBytes(_ option: Option, _ payload: [UInt8] = []) -> [UInt8] {
        be64(ihaveopt) + be32(option.rawValue) + be32(UInt32(payload.count)) + payload
    }

    func send(_ bytes: [UInt8]) throws { try stream.write(bytes) }

    /// One option reply: (option, type, payload).
    func readOptionReply() throws -> (option: UInt32, type: UInt32, payload: [UInt8]) {
        let header = try stream.readExactly(count: 20)
        guard Self.u64(header, 0) == Self.replyMagic else { throw FixtureError("bad option reply magic: \(header)") }
        let length = Int(Self.u32(header, 16))
        guard length <= 1 << 20 else { throw FixtureError("option reply too long: \(length)") }
        return (Self.u32(header, 8), Self.u32(header, 12), try stream.readExactly(count: length))
    }

    /// GO for `export` with no info requests; returns (size, transmission flags).
    func go(_ export: String) throws -> (size: UInt64, flags: UInt16) {
        let name = Array(export.utf8)
        try send(Self.optionBytes(.go, Self.be32(UInt32(name.count)) + name + [0, 0]))
        var size: UInt64 = 0, flags: UInt16 = 0
        for _ in 0..<64 {
            let reply = try readOptionReply()
            if reply.type == Self.repAck { return (size, flags) }
            if reply.type == 3, reply.payload.count >= 12, reply.payload[0] == 0, reply.payload[1] == 0 {
                size = Self.u64(reply.payload, 2)
                flags = UInt16(reply.payload[10]) << 8 | UInt16(reply.payload[11])
                continue
            }
            if reply.type & 0x8000_0000 != 0 {
                throw FixtureError("GO refused (type 0x\(String(reply.type, radix: 16))): \(String(decoding: reply.payload, as: UTF8.self))")
            }
        }
        throw FixtureError("GO: too many replies")
    }

    /// Sends NBD_CMD_READ and returns the magic of the reply that comes back.
    func readCommandReplyMagic(offset: UInt64, length: UInt32) throws -> UInt32 {
        try send(Self.be32(0x2560_9513) + [0, 0, 0, 0] + Self.be64(42) + Self.be64(offset) + Self.be32(length))
        return Self.u32(try stream.readExactly(count: 4), 0)
    }

    func startTLS(_ context: TLSClientContext, hostname: String = "localhost") throws {
        stream = try context.connect(on: socket, hostname: hostname)
    }

    func close() { stream.close() }

    static func be32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
    static func be64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }
    static func u32(_ b: [UInt8], _ at: Int) -> UInt32 { b[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) } }
    static func u64(_ b: [UInt8], _ at: Int) -> UInt64 { b[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
}
