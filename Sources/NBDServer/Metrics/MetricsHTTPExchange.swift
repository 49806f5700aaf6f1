import Foundation

/// One scrape on its own thread: read the request head (bounded in size and in time as a
/// whole, so a client trickling bytes cannot hold the thread longer than the deadline), answer,
/// close. Every socket call is guarded by `poll` with the time left, and sends never raise
/// SIGPIPE; nothing here can block the NBD server or trap on what a client sends.
struct MetricsHTTPExchange {
    let fd: Int32
    let limits: MetricsHTTPServer.Limits
    /// Over the concurrency limit: the request is still read (briefly), so that closing does
    /// not reset the connection under the client's feet, but only answered 503.
    let busy: Bool
    let render: @Sendable () -> [UInt8]

    func run() {
        defer { close(fd) }
        let readDeadline = MonotonicClock.now() &+ nanoseconds(busy ? min(1, limits.readTimeout) : limits.readTimeout)
        let request = readRequest(until: readDeadline)
        let response: [UInt8]
        switch request {
        case _ where busy: response = MetricsHTTPResponse.message(503, "Service Unavailable", extraHeaders: "Retry-After: 1\r\n")
        case nil: response = MetricsHTTPResponse.message(408, "Request Timeout")
        case let .some(parsed): response = MetricsHTTPResponse.reply(to: parsed, body: render)
        }
        let sent = send(response, until: MonotonicClock.now() &+ nanoseconds(limits.writeTimeout))
        guard sent else { return }
        // Half-close, then swallow what the client may still send (briefly), so the kernel
        // does not answer unread bytes with a reset that could destroy the response in flight.
        shutdown(fd, Int32(SHUT_WR))
        drain(until: MonotonicClock.now() &+ 200_000_000)
    }

    /// The parsed head; nil when the deadline passed or the client went away first.
    private func readRequest(until deadline: UInt64) -> MetricsHTTPRequest? {
        var received: [UInt8] = []
        received.reserveCapacity(1024)
        var chunk = [UInt8](repeating: 0, count: 2048)
        while true {
            guard wait(for: Int16(POLLIN), until: deadline) else { return nil }
            let room = max(1, min(chunk.count, limits.maxHeaderBytes + 1 - received.count))
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, room, Int32(MSG_DONTWAIT)) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return nil
            }
            if count == 0 {
                // The client finished sending without ending its head.
                return received.isEmpty ? nil : .malformed
            }
            let scanFrom = max(0, received.count - 3)
            received.append(contentsOf: chunk[0..<count])
            let parsed = MetricsHTTPRequest.parse(received, maxHeadBytes: limits.maxHeaderBytes, scanFrom: scanFrom)
            if parsed != .incomplete { return parsed }
        }
    }

    /// Sends all of `bytes` before the deadline; false if that failed.
    private func send(_ bytes: [UInt8], until deadline: UInt64) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard wait(for: Int16(POLLOUT), until: deadline) else { return false }
            let count = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return false
            }
            offset += count
        }
        return true
    }

    private func drain(until deadline: UInt64) {
        var scratch = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < (64 << 10), wait(for: Int16(POLLIN), until: deadline) {
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if count <= 0 { return }
            total += count
        }
    }

    /// Polls for `events` until the deadline; false on timeout or a dead socket.
    private func wait(for events: Int16, until deadline: UInt64) -> Bool {
        while true {
            let now = MonotonicClock.now()
            guard now < deadline else { return false }
            let milliseconds = Int32(clamping: (deadline - now) / 1_000_000 + 1)
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                return false
            }
            if ready == 0 { continue }  // re-check the deadline
            // POLLHUP with data still readable is fine for reads; recv reports the rest.
            return entry.revents & (events | Int16(POLLHUP)) != 0 && entry.revents & Int16(POLLNVAL) == 0
        }
    }

    private func nanoseconds(_ seconds: Double) -> UInt64 {
        UInt64(max(0, min(seconds, 3600)) * 1_000_000_000)
    }
}
