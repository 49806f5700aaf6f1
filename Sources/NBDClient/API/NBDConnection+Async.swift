import NBDProtocol

/// The async/await API. Each call hops once: the request is written by the calling task and the
/// reader thread resumes the continuation when the reply is complete (never once per TLS record).
extension NBDConnection {
    /// Connects to the export a URI names, off the cooperative pool (DNS, connect and the TLS
    /// handshake block).
    public static func connect(_ uri: NBDURI, configure: @escaping @Sendable (inout NBDClientConfiguration) -> Void = { _ in }) async throws -> NBDConnection {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try spawnThread {
                    continuation.resume(with: Result { try NBDConnection.connect(uri, configure: configure) })
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }

    /// Connects to `text` parsed as an NBD URI.
    public static func connect(_ text: String) async throws -> NBDConnection {
        try await connect(try NBDURI(text))
    }

    public func read(at offset: UInt64, count: Int) async throws -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count, 1), alignment: 64)
        defer { buffer.deallocate() }
        let target = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count])
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let group = AsyncGroup(continuation)
            forEachPiece(count: count) { start, end in
                group.enter()
                submitRead(into: UnsafeMutableRawBufferPointer(rebasing: target[start..<end]), at: offset + UInt64(start)) {
                    group.leave($0)
                }
            }
            group.arm()
        }
        return [UInt8](target)
    }

    public func write(_ data: [UInt8], at offset: UInt64, fua: Bool = false) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            let group = AsyncGroup(continuation)
            data.withUnsafeBytes { bytes in
                // submitWrite has copied the bytes to the socket when it returns.
                forEachPiece(count: bytes.count) { start, end in
                    group.enter()
                    submitWrite(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), at: offset + UInt64(start), fua: fua) {
                        group.leave($0)
                    }
                }
            }
            group.arm()
        }
    }

    public func flush() async throws {
        _ = try await command(.flush)
    }

    public func trim(at offset: UInt64, length: UInt64, fua: Bool = false) async throws {
        _ = try await command(.trim, offset: offset, length: length, flags: fua ? .fua : [])
    }

    public func writeZeroes(at offset: UInt64, length: UInt64, noHole: Bool = false, fastZero: Bool = false, fua: Bool = false) async throws {
        var flags: CommandFlags = []
        if noHole { flags.insert(.noHole) }
        if fastZero { flags.insert(.fastZero) }
        if fua { flags.insert(.fua) }
        _ = try await command(.writeZeroes, offset: offset, length: length, flags: flags)
    }

    public func cache(at offset: UInt64, length: UInt64) async throws {
        _ = try await command(.cache, offset: offset, length: length)
    }

    /// Block status for every negotiated context; `requestOne` sets REQ_ONE.
    public func blockStatus(at offset: UInt64, length: UInt64, requestOne: Bool = false) async throws -> BlockStatusReply {
        let reply = try await command(.blockStatus, offset: offset, length: length, flags: requestOne ? .requestOne : [])
        guard case .blockStatus(let status) = reply else {
            throw NBDClientError(.protocolViolation, "BLOCK_STATUS reply without status")
        }
        return status
    }

    public func command(_ command: NBDCommand, offset: UInt64 = 0, length: UInt64 = 0, flags: CommandFlags = []) async throws -> CommandReply {
        try await withCheckedThrowingContinuation { continuation in
            submit(command, offset: offset, length: length, flags: flags) { continuation.resume(with: $0.mapError { $0 as Error }) }
        }
    }

    /// Soft disconnect (waits for requests in flight).
    public func disconnect() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            do {
                try spawnThread { [self] in
                    close()
                    continuation.resume()
                }
            } catch {
                close()
                continuation.resume()
            }
        }
    }
}

/// Resumes a continuation once every piece of a split request finished, with the first error.
final class AsyncGroup: @unchecked Sendable {
    private let lock = ConditionLock()
    private var outstanding = 1 // released by arm()
    private var firstError: NBDClientError?
    private var continuation: CheckedContinuation<Void, Error>?

    init(_ continuation: CheckedContinuation<Void, Error>) { self.continuation = continuation }

    func enter() { lock.withLock { outstanding += 1 } }
    func arm() { leave(.success(())) }

    func leave(_ result: Result<Void, NBDClientError>) {
        let finished: (CheckedContinuation<Void, Error>, NBDClientError?)? = lock.withLock {
            if case .failure(let error) = result, firstError == nil { firstError = error }
            outstanding -= 1
            guard outstanding == 0, let c = continuation else { return nil }
            continuation = nil
            return (c, firstError)
        }
        if let (c, error) = finished {
            if let error { c.resume(throwing: error) } else { c.resume() }
        }
    }
}
