import BlockDevices
import Foundation
import Logging
import NBDProtocol
import NBDTLS

/// The transmission phase of one connection: this thread reads and validates requests
/// (exactly by length), workers execute them, and `ReplySender` writes the replies.
final class TransmissionDriver: @unchecked Sendable {
    /// Why the phase ended.
    enum Ending: Equatable, Sendable {
        case clientDisconnected      // NBD_CMD_DISC
        case connectionClosed        // EOF or read error
        case protocolViolation(String)
    }

    let context: TransmissionContext
    let logger: Logger
    private let stream: any ByteStream
    private let workers: RequestWorkers
    let sender: ReplySender
    private let payloads = PayloadBufferPool()
    private let validator: RequestValidator
    /// The export's metric handles; nil when metrics are off (then no clock is read either).
    private let metrics: ExportMetrics?

    init(context: TransmissionContext, stream: any ByteStream, logger: Logger,
         maxThreads: Int, inFlightLimit: Int, metrics: ExportMetrics? = nil,
         onSendFailure: @escaping @Sendable (any Error) -> Void) {
        self.context = context
        self.stream = stream
        self.logger = logger
        self.metrics = metrics
        workers = RequestWorkers(maxThreads: maxThreads, inFlightLimit: inFlightLimit, name: "nbd-worker")
        sender = ReplySender(stream: stream, form: context.replyForm, onFailure: onSendFailure)
        validator = context.validator
    }

    /// Serves requests until the client disconnects or breaks the protocol; every request
    /// read before that has been answered when this returns.
    func run() -> Ending {
        let ending = readLoop()
        workers.finish()
        return ending
    }

    private func readLoop() -> Ending {
        let input = BufferedRequestReader(stream: stream)
        // Replies to the reads the reader answers itself, sent before it can block.
        let batch = ReplyBatch(capacity: Self.immediateLimit * 2)
        let sender = sender
        input.beforeReceiving = { batch.flush(to: sender) }
        defer { batch.flush(to: sender) }
        // The reader's buffer for cached reads too large for the batch.
        let readerScratch = WorkerContext()
        var header = [UInt8](repeating: 0, count: context.requestForm.wireSize)
        while true {
            do {
                try header.withUnsafeMutableBytes { try input.readExactly(into: $0) }
            } catch {
                return .connectionClosed
            }
            let request: NBDRequest
            do {
                request = try NBDRequest(decoding: header, form: context.requestForm)
            } catch {
                return .protocolViolation("undecodable request header: \(error)")
            }
            let payloadLength = request.payloadLength(form: context.requestForm)
            switch validator.validate(request) {
            case let .disconnect(reason):
                return .protocolViolation(reason)
            case let .reply(error, message):
                logger.debug("refusing \(request.command) cookie \(request.cookie): \(message)")
                // The validator bounded the payload by its drain limit.
                if payloadLength > 0 && !drain(payloadLength, from: input) { return .connectionClosed }
                batch.flush(to: sender)
                sender.sendError(cookie: request.cookie, requestOffset: request.offset, error: error, message: message)
                metrics?.refused(request, error: error)
                continue
            case .valid:
                break
            }
            // What the client really sent (e.g. a 64-bit length under extended headers); costs
            // one level check per request unless `serve -vv` asked for it.
            logger.trace("\(request.command) offset \(request.offset) length \(request.length) flags \(request.flags) cookie \(request.cookie)")
            if request.command == .disconnect { return .clientDisconnected }
            var payload: PooledBuffer?
            if payloadLength > 0 {
                let buffer = payloads.take(count: Int(payloadLength))
                do {
                    try input.readExactly(into: buffer.bytes)
                } catch {
                    payloads.give(buffer)
                    return .connectionClosed
                }
                payload = buffer
            }
            let started = metrics?.begin() ?? 0
            if let result = executeImmediately(request, payload: payload, batch: batch, scratch: readerScratch) {
                metrics?.end(request, result: result, startedAt: started)
                if let payload { payloads.give(payload) }
                continue
            }
            // `submit` may wait for a free slot: nothing gathered may wait with it.
            batch.flush(to: sender)
            let pool = payloads
            workers.submit { [self, payload] worker in
                let result = execute(request, payload: payload, worker: worker)
                metrics?.end(request, result: result, startedAt: started)
                if let payload { pool.give(payload) }
            }
        }
    }

    /// Reads and discards `count` bytes (a refused request's payload) to stay in sync.
    private func drain(_ count: UInt64, from input: BufferedRequestReader) -> Bool {
        var remaining = count
        var scratch = [UInt8](repeating: 0, count: 64 << 10)
        return scratch.withUnsafeMutableBytes { buffer in
            while remaining > 0 {
                let piece = Int(min(UInt64(buffer.count), remaining))
                do {
                    try input.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<piece]))
                } catch {
                    return false
                }
                remaining -= UInt64(piece)
            }
            return true
        }
    }

    // MARK: Execution on the reader thread

    /// Largest READ/WRITE whose reply the reader gathers in its batch.
    static let immediateLimit = 128 << 10
    /// Largest cached READ the reader answers itself (sent on its own).
    static let immediateReadLimit = 1 << 20

    /// Answers a small READ or plain WRITE on the reader thread when the device can do it
    /// without waiting for storage (page-cache hit, buffered write): a hand-off to a worker
    /// and back costs more than the request itself. Returns the errno answered (`.success`
    /// included), or nil, having done nothing, when the request must go to a worker.
    private func executeImmediately(_ request: NBDRequest, payload: PooledBuffer?, batch: ReplyBatch,
                                    scratch: WorkerContext) -> NBDErrno? {
        let device = context.device
        do {
            switch request.command {
            case .read where request.length > UInt64(Self.immediateLimit) && request.length <= UInt64(Self.immediateReadLimit):
                // A large cached read: copying it out here costs less than waking a worker.
                let buffer = scratch.buffer(count: Int(request.length))
                guard try device.readIfImmediate(into: buffer, at: request.offset) else { return nil }
                batch.flush(to: sender)
                try sendFilledRead(request, buffer: buffer)
            case .read:
                guard request.length > 0, request.length <= UInt64(Self.immediateLimit) else { return nil }
                let count = Int(request.length)
                var reserved = batch.reserve(count)
                if reserved == nil {
                    batch.flush(to: sender)
                    reserved = batch.reserve(count)
                }
                guard let buffer = reserved else { return nil }
                guard try device.readIfImmediate(into: buffer, at: request.offset) else {
                    batch.release(buffer)
                    return nil
                }
                if let header = try plainReadHeader(request, buffer: buffer) {
                    batch.append(header: header, data: UnsafeRawBufferPointer(buffer))
                    break
                }
                // Zeroes that may be holes: described chunk by chunk. A read of nothing but
                // a hole is one small chunk, gathered with the other replies; mixed ones are
                // sent on their own.
                let chunks = try plannedChunks(request)
                if let hole = try wholeHoleReply(request, chunks: chunks) {
                    batch.release(buffer)
                    appendOrSend(hole, to: batch)
                } else {
                    batch.flush(to: sender)
                    try sendChunks(chunks, for: request, buffer: buffer)
                }
            case .write:
                guard let payload, !request.flags.contains(.fua),
                      try device.writeIfImmediate(UnsafeRawBufferPointer(payload.bytes), at: request.offset)
                else { return nil }
                appendOrSend(sender.builder.success(cookie: request.cookie, requestOffset: request.offset), to: batch)
            default:
                return nil
            }
        } catch {
            return sendFailure(error, for: request)
        }
        return .success
    }

    /// Gathers a small reply in the batch (flushing it first when full).
    private func appendOrSend(_ reply: [UInt8], to batch: ReplyBatch) {
        if batch.append(reply: reply) { return }
        batch.flush(to: sender)
        if !batch.append(reply: reply) { sender.send(reply) }
    }

    // MARK: Execution (worker threads)

    /// Runs one request on a worker and answers it; returns the errno answered (`.success` included).
    private func execute(_ request: NBDRequest, payload: PooledBuffer?, worker: WorkerContext) -> NBDErrno {
        let device = context.device
        let fua = request.flags.contains(.fua)
        do {
            switch request.command {
            case .read:
                try sendRead(request, worker: worker)
                return .success
            case .blockStatus:
                try sendBlockStatus(request)
                return .success
            case .write:
                let data = payload.map { UnsafeRawBufferPointer($0.bytes) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
                if data.count > 0 { try device.write(data, at: request.offset, fua: fua) }
            case .flush:
                try device.flush()
            case .trim:
                try device.trim(offset: request.offset, length: request.length, fua: fua)
            case .writeZeroes:
                try device.writeZeroes(offset: request.offset, length: request.length,
                                       mayTrim: !request.flags.contains(.noHole),
                                       fastOnly: request.flags.contains(.fastZero), fua: fua)
            case .cache:
                try device.cache(offset: request.offset, length: request.length)
            default:
                // Unreachable: the validator refuses unknown commands.
                sender.sendError(cookie: request.cookie, requestOffset: request.offset, error: .EINVAL,
                                 message: "unsupported command \(request.command)")
                return .EINVAL
            }
            sender.sendSuccess(cookie: request.cookie, requestOffset: request.offset)
            return .success
        } catch {
            return sendFailure(error, for: request)
        }
    }

    /// Answers a failed request with the errno its error maps to, and returns that errno.
    @discardableResult
    private func sendFailure(_ error: any Error, for request: NBDRequest) -> NBDErrno {
        let errno = StorageErrorMapping.nbdErrno(for: error, command: request.command, flags: request.flags)
        if errno != .ENOTSUP {
            logger.warning("\(request.command) \(request.offset)+\(request.length) failed: \(error)")
        }
        // The client learns what failed and why in general terms; the details (host paths,
        // image-internal offsets) stay in the server's log, never on the wire.
        let reason = (error as? BlockDeviceError)?.code.description ?? "I/O error"
        sender.sendError(cookie: request.cookie, requestOffset: request.offset, error: errno,
                         message: "\(request.command) at \(request.offset) failed: \(reason)")
        return errno
    }
}
