import NBDProtocol

/// Builds the server's side of a handshake as bytes, for feeding the client state machine.
enum ServerBytes {
    static func greetingPrefix() -> [UInt8] {
        var w = ByteWriter()
        w.append(NBDMagic.nbdMagic)
        w.append(NBDMagic.ihaveopt)
        return w.bytes
    }

    static func flags(_ flags: HandshakeFlags) -> [UInt8] {
        [UInt8(flags.rawValue >> 8), UInt8(flags.rawValue & 0xff)]
    }

    static func oldstyle(size: UInt64, flags: TransmissionFlags) -> (prefix: [UInt8], rest: [UInt8]) {
        let all = OldstyleGreeting(exportSize: size, transmissionFlags: flags).bytes
        return (Array(all[..<16]), Array(all[16...]))
    }

    static func reply(_ option: NBDOption, _ type: NBDReplyType, _ payload: [UInt8] = [], length: UInt32? = nil) -> (header: [UInt8], payload: [UInt8]) {
        let header = OptionReplyHeader(option: option, replyType: type, length: length ?? UInt32(payload.count)).bytes
        return (header, payload)
    }

    static func info(_ payload: InfoReplyPayload, for option: NBDOption = .go) -> (header: [UInt8], payload: [UInt8]) {
        reply(option, .info, try! payload.encoded())
    }

    static func metaContext(_ id: UInt32, _ name: String, for option: NBDOption = .setMetaContext) -> (header: [UInt8], payload: [UInt8]) {
        reply(option, .metaContext, try! MetaContextReplyPayload(contextID: id, name: name).encoded())
    }

    static func server(_ name: String, _ description: String) -> (header: [UInt8], payload: [UInt8]) {
        reply(.list, .server, try! ServerReplyPayload(exportName: name, description: description).encoded())
    }

    static let defaultFlags: TransmissionFlags = [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes]
}

/// Drives a `ClientNegotiationStateMachine` the way an engine would, recording what it sent.
struct Conversation {
    var machine: ClientNegotiationStateMachine
    var lastAction: ClientNegotiationAction
    /// Every option the client sent, in order (parsed from the bytes it asked to write).
    var sentOptions: [NBDOption] = []
    var sentBytes: [[UInt8]] = []

    init(_ configuration: ClientNegotiationConfiguration) {
        machine = ClientNegotiationStateMachine(configuration: configuration)
        lastAction = machine.start()
    }

    /// Greets as a fixed-newstyle server.
    mutating func greet(_ flags: HandshakeFlags = [.fixedNewstyle, .noZeroes]) {
        feed(ServerBytes.greetingPrefix())
        feed(ServerBytes.flags(flags))
    }

    /// Feeds bytes the last action asked for and records what the client sends next.
    mutating func feed(_ bytes: [UInt8]) {
        lastAction = machine.received(bytes)
        record()
    }

    /// Feeds one option reply: header, then payload if the client asks for it.
    mutating func reply(_ reply: (header: [UInt8], payload: [UInt8])) {
        feed(reply.header)
        if case .receive(let count) = lastAction, count == reply.payload.count, !reply.payload.isEmpty {
            feed(reply.payload)
        }
    }

    mutating func tlsUp() {
        lastAction = machine.tlsEstablished()
        record()
    }

    mutating func record() {
        let bytes: [UInt8]
        switch lastAction {
        case .send(let b, _): bytes = b
        case .finish(_, let b), .fail(_, let b): bytes = b
        default: return
        }
        guard !bytes.isEmpty else { return }
        sentBytes.append(bytes)
        // The first write carries 4 bytes of client flags before the first option.
        let magic = OptionHeader(option: .abort, length: 0).bytes[0..<8]
        var i = bytes.count >= 12 && bytes[0..<8] != magic && bytes[4..<12] == magic ? 4 : 0
        while i + 16 <= bytes.count {
            guard let header = try? OptionHeader(decoding: Array(bytes[i..<i + 16])) else { break }
            sentOptions.append(header.option)
            i += 16 + Int(header.length)
        }
    }

    var outcome: ClientNegotiationOutcome? {
        if case .finish(let outcome, _) = lastAction { return outcome }
        return nil
    }

    var failure: ClientNegotiationError? {
        if case .fail(let error, _) = lastAction { return error }
        return nil
    }

    var export: NegotiatedExport? {
        switch outcome {
        case .transmission(let e), .info(let e): e
        default: nil
        }
    }
}
