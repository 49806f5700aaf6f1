import NBDProtocol

/// What the caller learns when a request completes successfully.
public enum CommandReply: Sendable {
    case done
    case blockStatus(BlockStatusReply)
}

/// One request in flight: what was asked, where READ data goes, and what the reply said so far.
/// Touched only by the submitting thread (before it is published) and the reader thread.
final class PendingRequest: @unchecked Sendable {
    let command: NBDCommand
    let flags: CommandFlags
    let offset: UInt64
    let length: UInt64
    /// READ destination; the caller keeps it alive until `completion` runs.
    let destination: UnsafeMutableRawBufferPointer?
    let completion: @Sendable (Result<CommandReply, NBDClientError>) -> Void

    var coverage = ReadCoverage()
    var statuses: [UInt32: [BlockStatusExtent]] = [:]
    /// The first error chunk's value and message; later ones are ignored.
    var serverError: (errno: NBDErrno, message: String?)?

    init(command: NBDCommand, flags: CommandFlags, offset: UInt64, length: UInt64,
         destination: UnsafeMutableRawBufferPointer?,
         completion: @escaping @Sendable (Result<CommandReply, NBDClientError>) -> Void) {
        self.command = command
        self.flags = flags
        self.offset = offset
        self.length = length
        self.destination = destination
        self.completion = completion
    }

    var failure: NBDClientError? {
        guard let serverError else { return nil }
        let value = serverError.errno.normalized
        return NBDClientError(.commandFailed, "\(command) of \(length) bytes at offset \(offset) failed with \(value)",
                              serverMessage: serverError.message, errno: value.rawValue)
    }
}
