/// Waits for a batch of submitted requests and keeps the first error (every per-request error
/// is seen; none is dropped — CVE-2022-0485).
final class RequestGroup: @unchecked Sendable {
    private let lock = ConditionLock()
    private var outstanding = 0
    private var firstError: NBDClientError?
    private var lastReply: CommandReply?

    func enter() { lock.withLock { outstanding += 1 } }

    func leave(_ result: Result<CommandReply, NBDClientError>) {
        lock.withLock {
            switch result {
            case .failure(let error): if firstError == nil { firstError = error }
            case .success(let reply): lastReply = reply
            }
            outstanding -= 1
            if outstanding == 0 { lock.broadcast() }
        }
    }

    /// Blocks until every request finished; throws the first error.
    func wait() throws -> CommandReply? {
        try lock.withLock {
            while outstanding > 0 { lock.wait() }
            if let firstError { throw firstError }
            return lastReply
        }
    }
}
