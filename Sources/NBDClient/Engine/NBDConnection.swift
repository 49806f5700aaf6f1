#if canImport(Glibc)
import Glibc
#endif
import NBDProtocol
import NBDTLS

/// One NBD connection in the transmission phase.
///
/// Blocking design (docs/architecture.md §3.6): requests are written by the submitting thread under a
/// writer lock, each as one unit (header and payload together); one reader thread matches replies
/// to cookies and completes requests. Many requests may be in flight; `maximumInFlight` bounds
/// them, and submissions beyond it wait. READ data is read straight from the socket into the
/// caller's buffer.
///
/// Any server misbehaviour (unknown cookie, bad magic, chunks outside a request, bogus lengths…)
/// is a hard disconnect: every request in flight fails with `.protocolViolation`, never a crash.
public final class NBDConnection: @unchecked Sendable {
    /// What the handshake negotiated.
    public let export: NegotiatedExport
    let stream: any ByteStream
    /// The plaintext socket under `stream` (the same object without TLS), used only to wake
    /// the reader with `shutdown(2)`.
    let socket: SocketStream
    let form: NBDRequest.Form
    let maximumInFlight: Int

    /// Guards `pending`, `nextCookie`, `inFlight`, `terminalError`, `closing`.
    let state = ConditionLock()
    var pending: [UInt64: PendingRequest] = [:]
    var nextCookie: UInt64 = 1
    var terminalError: NBDClientError?
    var closing = false
    var readerFinished = false
    /// Serialises whole-request writes.
    let writeLock = ConditionLock()
    /// Orders `wake()` against the reader's final close: the descriptor is released only by the
    /// reader thread, so no thread ever touches a number the kernel may already have reused for
    /// another connection (seen: an old reader stealing the next connection's greeting).
    let descriptorLock = ConditionLock()
    var descriptorReleased = false
    /// The reader thread, so `close()` called from a completion handler does not wait for itself.
    var readerThread: pthread_t?

    init(stream: any ByteStream, socket: SocketStream, export: NegotiatedExport, maximumInFlight: Int) throws {
        self.stream = stream
        self.socket = socket
        self.export = export
        self.form = export.replyMode == .extended ? .extended : .compact
        self.maximumInFlight = max(1, maximumInFlight)
        try spawnThread { [self] in readLoop() }
    }

    // MARK: - Connecting

    /// Connects, negotiates and enters transmission (blocking).
    public static func connect(_ transport: NBDURI.Transport, configuration: NBDClientConfiguration) throws -> NBDConnection {
        let socket = try SocketConnector.connect(transport)
        let (stream, outcome) = try ClientHandshakeDriver(socket: socket, configuration: configuration).run(mode: .go)
        guard case .transmission(let export) = outcome else {
            stream.close()
            throw NBDClientError(.negotiationFailed, "handshake ended without entering transmission")
        }
        do {
            return try NBDConnection(stream: stream, socket: socket, export: export, maximumInFlight: configuration.maximumInFlight)
        } catch {
            stream.close()
            throw error
        }
    }

    /// Connects to the export a URI names (blocking).
    public static func connect(_ uri: NBDURI, configure: (inout NBDClientConfiguration) -> Void = { _ in }) throws -> NBDConnection {
        var configuration = try NBDClientConfiguration(uri: uri)
        configure(&configuration)
        return try connect(uri.transport, configuration: configuration)
    }

    /// Lists the exports of a server (`NBD_OPT_LIST`, then `NBD_OPT_INFO` on each).
    public static func listExports(_ uri: NBDURI, configure: (inout NBDClientConfiguration) -> Void = { _ in }) throws
        -> (exports: [ListedExport], tlsActive: Bool) {
        var configuration = try NBDClientConfiguration(uri: uri)
        configure(&configuration)
        let socket = try SocketConnector.connect(uri.transport)
        let (stream, outcome) = try ClientHandshakeDriver(socket: socket, configuration: configuration).run(mode: .list)
        stream.close()
        guard case .list(let exports, let tls) = outcome else {
            throw NBDClientError(.negotiationFailed, "handshake ended without a list")
        }
        return (exports, tls)
    }

    // MARK: - Submitting
    //
    // Completion handlers run on the reader thread: they must return quickly and must not wait
    // for another request of this connection (a handler that blocks stalls every reply).

    /// Sends a READ; data lands in `buffer` (which must stay valid until `completion` runs).
    public func submitRead(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, flags: CommandFlags = [],
                           completion: @escaping @Sendable (Result<Void, NBDClientError>) -> Void) {
        submit(.read, flags: flags, offset: offset, length: UInt64(buffer.count), payload: nil, destination: buffer) {
            completion($0.map { _ in () })
        }
    }

    /// Sends a WRITE (`data` is copied to the socket before this returns).
    public func submitWrite(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool = false,
                            completion: @escaping @Sendable (Result<Void, NBDClientError>) -> Void) {
        submit(.write, flags: fua ? .fua : [], offset: offset, length: UInt64(data.count), payload: data, destination: nil) {
            completion($0.map { _ in () })
        }
    }

    /// Sends a command without payload: FLUSH, TRIM, CACHE, WRITE_ZEROES or BLOCK_STATUS.
    public func submit(_ command: NBDCommand, offset: UInt64 = 0, length: UInt64 = 0, flags: CommandFlags = [],
                       completion: @escaping @Sendable (Result<CommandReply, NBDClientError>) -> Void) {
        guard command != .read, command != .write, command != .disconnect else {
            completion(.failure(NBDClientError(.invalidArgument, "use submitRead/submitWrite/close for \(command)")))
            return
        }
        submit(command, flags: flags, offset: offset, length: length, payload: nil, destination: nil, completion: completion)
    }

    func submit(_ command: NBDCommand, flags: CommandFlags, offset: UInt64, length: UInt64,
                payload: UnsafeRawBufferPointer?, destination: UnsafeMutableRawBufferPointer?,
                completion: @escaping @Sendable (Result<CommandReply, NBDClientError>) -> Void) {
        if let problem = validate(command, flags: flags, offset: offset, length: length) {
            completion(.failure(problem))
            return
        }
        var wireFlags = flags
        if form == .extended && command == .write { wireFlags.insert(.payloadLength) }
        let request = PendingRequest(command: command, flags: wireFlags, offset: offset, length: length,
                                     destination: destination, completion: completion)
        // Reserve a slot and a cookie; publish before sending so a fast reply finds it.
        let cookieOrError: Result<UInt64, NBDClientError> = state.withLock {
            while pending.count >= maximumInFlight && terminalError == nil && !closing { state.wait() }
            if let terminalError { return .failure(terminalError) }
            if closing { return .failure(NBDClientError(.disconnected, "connection is closing")) }
            let cookie = nextCookie
            nextCookie &+= 1
            pending[cookie] = request
            return .success(cookie)
        }
        let cookie: UInt64
        switch cookieOrError {
        case .failure(let error): completion(.failure(error)); return
        case .success(let value): cookie = value
        }
        let header: [UInt8]
        do {
            header = try NBDRequest(command: command, flags: wireFlags, cookie: cookie, offset: offset, length: length).encoded(form: form)
        } catch {
            finishLocally(cookie, NBDClientError(.invalidArgument, "\(error)"))
            return
        }
        do {
            try writeLock.withLock {
                try header.withUnsafeBytes { headerBytes in
                    if let payload, payload.count > 0 {
                        try stream.write([headerBytes, payload])
                    } else {
                        try stream.write([headerBytes])
                    }
                }
            }
        } catch {
            // A failed write loses framing: the connection is unusable.
            disconnect(NBDClientError(.disconnected, "sending \(command) failed: \(error)"))
        }
    }

    /// Client-side checks, so a request the server must refuse is never sent.
    func validate(_ command: NBDCommand, flags: CommandFlags, offset: UInt64, length: UInt64) -> NBDClientError? {
        let f = export.flags
        let writes: Set<NBDCommand> = [.write, .trim, .writeZeroes]
        if writes.contains(command) && f.contains(.readOnly) {
            return NBDClientError(.notSupported, "export is read-only; \(command) refused")
        }
        switch command {
        case .flush where !f.contains(.sendFlush): return NBDClientError(.notSupported, "export does not support FLUSH")
        case .trim where !f.contains(.sendTrim): return NBDClientError(.notSupported, "export does not support TRIM")
        case .writeZeroes where !f.contains(.sendWriteZeroes): return NBDClientError(.notSupported, "export does not support WRITE_ZEROES")
        case .cache where !f.contains(.sendCache): return NBDClientError(.notSupported, "export does not support CACHE")
        case .blockStatus where export.metaContexts.isEmpty:
            return NBDClientError(.notSupported, "no metadata context was negotiated; BLOCK_STATUS unavailable")
        default: break
        }
        if flags.contains(.fua) && !f.contains(.sendFUA) { return NBDClientError(.notSupported, "export does not support FUA") }
        if flags.contains(.fastZero) && !f.contains(.sendFastZero) { return NBDClientError(.notSupported, "export does not support FAST_ZERO") }
        if flags.contains(.dontFragment) && !f.contains(.sendDF) { return NBDClientError(.notSupported, "export does not support DF") }
        if command == .flush { return nil }
        let (end, overflow) = offset.addingReportingOverflow(length)
        if overflow || end > export.size {
            return NBDClientError(.invalidArgument, "\(command) of \(length) bytes at offset \(offset) runs past the end of the \(export.size)-byte export")
        }
        if command == .read || command == .write {
            if length > UInt64(maximumPayload) {
                return NBDClientError(.invalidArgument, "\(command) of \(length) bytes exceeds the maximum payload \(maximumPayload)")
            }
        } else if form == .compact && length > UInt64(UInt32.max) {
            return NBDClientError(.invalidArgument, "\(command) length \(length) needs extended headers")
        }
        return nil
    }

    /// Largest READ/WRITE this connection sends: the server's maximum, capped at 32 MiB
    /// (the size no peer may treat as a denial of service).
    public var maximumPayload: UInt32 {
        let advertised = export.blockSizes?.maximumPayload ?? NBDBlockSizes.conservativeClientDefault.maximumPayload
        return min(advertised, 32 << 20)
    }

    /// Preferred request size (≥ the minimum block size).
    public var preferredBlockSize: UInt32 {
        export.blockSizes?.preferred ?? 4096
    }

    /// Minimum alignment for offsets and lengths.
    public var minimumBlockSize: UInt32 {
        export.blockSizes?.minimum ?? 1
    }

    // MARK: - Closing

    /// Soft disconnect: waits for requests in flight, sends `NBD_CMD_DISC`, and returns once the
    /// reader thread has finished and released the socket.
    public func close() {
        let alreadyDead: Bool = state.withLock {
            closing = true
            state.broadcast()
            while !pending.isEmpty && terminalError == nil { state.wait() }
            return terminalError != nil
        }
        if !alreadyDead {
            let disc = (try? NBDRequest(command: .disconnect, cookie: 0).encoded(form: form)) ?? []
            try? writeLock.withLock { try stream.write(disc) }
        }
        disconnect(NBDClientError(.disconnected, "connection closed"))
        state.withLock {
            if let reader = readerThread, pthread_equal(reader, pthread_self()) != 0 { return }
            while !readerFinished { state.wait() }
        }
    }

    /// Hard disconnect: remember `error`, wake the reader, fail everything in flight.
    ///
    /// Only the reader thread completes requests that reached the wire (it may be writing READ
    /// data into their buffers) and only it closes the stream; other threads shut the socket
    /// down, which wakes the reader, and the reader then fails what is left with the first
    /// error recorded.
    func disconnect(_ error: NBDClientError, fromReader: Bool = false) {
        let failed: [PendingRequest] = state.withLock {
            if terminalError == nil { terminalError = error }
            state.broadcast()
            guard fromReader || readerFinished else { return [] }
            let all = Array(pending.values)
            pending.removeAll()
            return all
        }
        wake()
        let reason = state.withLock { terminalError ?? error }
        for request in failed { request.completion(.failure(reason)) }
    }

    /// Shuts the socket down (both directions) unless the reader already released it.
    func wake() {
        descriptorLock.withLock {
            if !descriptorReleased { _ = Glibc.shutdown(socket.fd, Int32(SHUT_RDWR)) }
        }
    }

    /// The reader's last act: close the stream (TLS close_notify first) and the descriptor.
    func releaseDescriptor() {
        descriptorLock.withLock {
            descriptorReleased = true
            stream.close()
            socket.close()
        }
    }

    /// Completes a request that never reached the wire.
    func finishLocally(_ cookie: UInt64, _ error: NBDClientError) {
        let request: PendingRequest? = state.withLock {
            let r = pending.removeValue(forKey: cookie)
            state.broadcast()
            return r
        }
        request?.completion(.failure(error))
    }

    /// Why the connection is unusable, if it is.
    public var failure: NBDClientError? { state.withLock { terminalError } }

    deinit { releaseDescriptor() }
}
