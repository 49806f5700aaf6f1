import Testing
@testable import NBDProtocol

/// A readable summary of one action, so transition tables compare meaning rather than bytes.
enum Step: Hashable, CustomStringConvertible {
    /// An option reply of this type (and, for INFO, this info type; for META_CONTEXT, this name).
    case reply(NBDReplyType)
    case info(NBDInfoType)
    case server(String)
    case context(String)
    case exportNameReply(bytes: Int)
    case greeting
    case readClientFlags
    case readNext
    case readPayload(UInt32)
    case startTLS
    case transmission
    case close

    var description: String {
        switch self {
        case .reply(let t): "reply \(t)"
        case .info(let t): "info \(t)"
        case .server(let n): "server '\(n)'"
        case .context(let n): "context '\(n)'"
        case .exportNameReply(let n): "export-name reply \(n) bytes"
        case .greeting: "greeting"
        case .readClientFlags: "read client flags"
        case .readNext: "read next option"
        case .readPayload(let n): "read \(n) payload bytes"
        case .startTLS: "start TLS"
        case .transmission: "enter transmission"
        case .close: "close"
        }
    }
}

/// Turns actions into steps, parsing every sent option reply.
func steps(_ actions: [ServerNegotiationAction]) -> [Step] {
    actions.flatMap { action -> [Step] in
        switch action {
        case .send(let bytes):
            if bytes.count == NewstyleGreeting.wireSize, (try? NewstyleGreeting(decoding: bytes)) != nil { return [.greeting] }
            if bytes.count == ExportNameReply.paddedWireSize || bytes.count == ExportNameReply.unpaddedWireSize,
               bytes.count < OptionReplyHeader.wireSize || (try? OptionReplyHeader(decoding: Array(bytes[0 ..< 20]))) == nil {
                return [.exportNameReply(bytes: bytes.count)]
            }
            guard let header = try? OptionReplyHeader(decoding: Array(bytes.prefix(20))) else {
                Issue.record("unparseable send of \(bytes.count) bytes")
                return []
            }
            let data = Array(bytes.dropFirst(20))
            #expect(Int(header.length) == data.count, "reply length field matches its data")
            switch header.replyType {
            case .info: return [.info((try? InfoReplyPayload(decoding: data))?.infoType ?? NBDInfoType(rawValue: 0xffff))]
            case .server: return [.server((try? ServerReplyPayload(decoding: data))?.exportName ?? "?")]
            case .metaContext: return [.context((try? MetaContextReplyPayload(decoding: data))?.name ?? "?")]
            default: return [.reply(header.replyType)]
            }
        case .readClientFlags: return [.readClientFlags]
        case .readNextOption: return [.readNext]
        case .readOptionPayload(let n): return [.readPayload(n)]
        case .startTLS: return [.startTLS]
        case .enterTransmission: return [.transmission]
        case .close: return [.close]
        }
    }
}

/// Drives a state machine through the standard events.
struct NegotiationDriver {
    var machine: ServerNegotiationStateMachine
    /// Every action returned so far.
    var log: [ServerNegotiationAction] = []

    init(_ configuration: ServerNegotiationConfiguration, clientFlags: ClientFlags = [.fixedNewstyle, .noZeroes]) {
        machine = ServerNegotiationStateMachine(configuration: configuration)
        _ = machine.start()
        _ = machine.receivedClientFlags(clientFlags)
    }

    /// Sends one option (header + data) and returns the steps of the data event
    /// (or of the header event, when that one already ended things).
    mutating func send(_ option: NBDOption, _ payload: [UInt8] = []) -> [Step] {
        let headerActions = machine.receivedOptionHeader(option: option, length: UInt32(payload.count))
        log += headerActions
        guard headerActions == [.readOptionPayload(length: UInt32(payload.count))] else { return steps(headerActions) }
        let actions = machine.receivedOption(option: option, payload: payload)
        log += actions
        return steps(actions)
    }

    mutating func tlsSucceeds(identity: String? = "CN=client", refusal: String? = nil) -> [Step] {
        let actions = machine.tlsHandshakeSucceeded(peerIdentity: identity, authorizationRefusal: refusal)
        log += actions
        return steps(actions)
    }

    /// The session of the last `.enterTransmission`, if any.
    var session: NegotiatedSession? {
        for action in log.reversed() { if case .enterTransmission(let s) = action { return s } }
        return nil
    }
}

/// Option data builders.
func goPayload(_ name: String, _ infos: [NBDInfoType] = []) -> [UInt8] {
    (try? InfoRequestPayload(exportName: name, requestedInfo: infos).encoded()) ?? []
}

func metaPayload(_ name: String, _ queries: [String]) -> [UInt8] {
    (try? MetaContextRequestPayload(exportName: name, queries: queries).encoded()) ?? []
}

enum Fixtures {
    static let disk = ExportDescriptor(name: "disk", description: "the disk", size: 1 << 20,
                                       transmissionFlags: [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes, .sendFastZero, .sendCache],
                                       blockSizes: NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 1 << 25),
                                       offersAllocationDepth: true)
    static let secret = ExportDescriptor(name: "secret", description: "tls only", size: 4096, tlsOnly: true)

    static func configuration(_ mode: ServerTLSMode, tlsSupported: Bool = true) -> ServerNegotiationConfiguration {
        ServerNegotiationConfiguration(exports: [disk, secret], tlsMode: mode, tlsSupported: tlsSupported, defaultExportName: "disk")
    }
}

/// One row of a transition table.
enum Event: CustomStringConvertible {
    case option(NBDOption, [UInt8] = [])
    case tlsSucceeds
    case tlsRefused(String)
    case tlsFails

    var description: String {
        switch self {
        case .option(let o, let p): "\(o) with \(p.count) bytes"
        case .tlsSucceeds: "TLS handshake succeeds"
        case .tlsRefused: "TLS handshake succeeds but authorisation refuses"
        case .tlsFails: "TLS handshake fails"
        }
    }
}

/// Runs `table` (event → expected steps) against a fresh machine; returns the driver for
/// further checks.
@discardableResult
func runTable(_ configuration: ServerNegotiationConfiguration, clientFlags: ClientFlags = [.fixedNewstyle, .noZeroes],
              _ table: [(Event, [Step])], sourceLocation: SourceLocation = #_sourceLocation) -> NegotiationDriver {
    var driver = NegotiationDriver(configuration, clientFlags: clientFlags)
    for (index, (event, expected)) in table.enumerated() {
        let got: [Step]
        switch event {
        case .option(let option, let payload): got = driver.send(option, payload)
        case .tlsSucceeds: got = driver.tlsSucceeds()
        case .tlsRefused(let why): got = driver.tlsSucceeds(refusal: why)
        case .tlsFails:
            let actions = driver.machine.tlsHandshakeFailed(reason: "bad certificate")
            driver.log += actions
            got = steps(actions)
        }
        #expect(got == expected, "row \(index): \(event)", sourceLocation: sourceLocation)
    }
    return driver
}
