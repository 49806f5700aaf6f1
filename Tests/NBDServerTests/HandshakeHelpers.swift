import Foundation
import Logging
import NBDProtocol
import NBDTLS
@testable import NBDServer

/// Connects to 127.0.0.1:`port`; returns a peer with a receive timeout.
func connectLoopback(port: UInt16) throws -> TestPeer {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard ok else {
        close(fd)
        throw NBDProtocolError(.invalidValue, "connect to port \(port) failed: \(errno)")
    }
    return TestPeer(fd: fd)
}

extension TestPeer {
    /// Reads the 18-byte greeting and answers with fixed-newstyle + no-zeroes client flags.
    func greet() throws {
        let greeting = try read(18)
        guard Array(greeting.prefix(8)) == Array("NBDMAGIC".utf8) else {
            throw NBDProtocolError(.badMagic, "no NBDMAGIC in greeting")
        }
        try send([0, 0, 0, 3])
    }

    /// Sends one option and collects replies until a final one (ACK or error).
    func option(_ option: NBDOption, _ payload: [UInt8] = []) throws -> [(OptionReplyHeader, [UInt8])] {
        try send(try OptionRequest(option: option, payload: payload).encoded())
        var replies: [(OptionReplyHeader, [UInt8])] = []
        for _ in 0..<100 {
            let header = try OptionReplyHeader(decoding: try read(OptionReplyHeader.wireSize))
            let body = try read(Int(header.length))
            replies.append((header, body))
            if header.replyType == .ack || header.replyType.isError { break }
        }
        return replies
    }

    /// Greets, negotiates structured replies and base:allocation, then GO on `name`.
    /// Returns the export size from NBD_INFO_EXPORT.
    @discardableResult
    func negotiate(export name: String = "") throws -> UInt64 {
        try greet()
        _ = try option(.structuredReply)
        _ = try option(.setMetaContext, try MetaContextRequestPayload(exportName: name, queries: ["base:allocation"]).encoded())
        let replies = try option(.go, try InfoRequestPayload(exportName: name, requestedInfo: [.blockSize]).encoded())
        guard let last = replies.last, last.0.replyType == .ack else {
            throw NBDProtocolError(.invalidValue, "GO was refused: \(replies.map(\.0.replyType))")
        }
        for (header, body) in replies where header.replyType == .info {
            if case let .export(size, _) = try InfoReplyPayload(decoding: body) { return size }
        }
        throw NBDProtocolError(.invalidValue, "no NBD_INFO_EXPORT")
    }
}

/// An in-process server on an ephemeral loopback port.
func startServer(exports: [ExportConfiguration], maxConnections: Int = 100, handshakeTimeout: Double = 10,
                 exitOnDisconnect: Bool = false) throws -> NBDServer {
    var logger = Logger(label: "server-test")
    logger.logLevel = .critical
    let server = try NBDServer(configuration: ServerConfiguration(
        listenAddresses: [.tcp(host: "127.0.0.1", port: 0)], exports: exports,
        maxConnections: maxConnections, handshakeTimeout: handshakeTimeout,
        exitOnDisconnect: exitOnDisconnect, shutdownGracePeriod: 10), logger: logger)
    try server.start()
    return server
}
