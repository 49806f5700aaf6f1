/// Splits the byte stream from QEMU into lines. QMP ends every message with CR LF; we split on
/// LF and drop a trailing CR, working on bytes (never `String` lines, where "\r\n" is one
/// Character). A line longer than `maximumLineLength` is an error rather than unbounded memory.
struct QMPLineBuffer {
    let maximumLineLength: Int
    private var pending: [UInt8] = []

    init(maximumLineLength: Int = 16 << 20) {
        self.maximumLineLength = maximumLineLength
    }

    /// Adds received bytes and returns every complete, non-empty line they finish.
    mutating func append(_ bytes: some Sequence<UInt8>) throws -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
                if !pending.isEmpty { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
            } else {
                guard pending.count < maximumLineLength else {
                    pending.removeAll()
                    throw QMPError(.malformedMessage, "QMP line longer than \(maximumLineLength) bytes")
                }
                pending.append(byte)
            }
        }
        return lines
    }

    /// Bytes received after the last newline (a truncated message when the peer closes).
    var unterminated: [UInt8] { pending }
}
