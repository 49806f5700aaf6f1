/// Entry point shared by the libFuzzer target Fuzz/qmp and its regression tests: bytes from
/// QEMU's monitor socket through the same pipeline as `QMPClient`'s reader thread (line
/// splitting, JSON parsing, message classification, delivery to the client state with two
/// commands outstanding). Every input must end in messages or a `QMPError`, never a trap.
package enum QMPFuzzEntryPoints {
    package static func monitorStream(_ bytes: [UInt8]) {
        var lines = QMPLineBuffer(maximumLineLength: 64 << 10)
        let state = QMPClientState()
        let first = state.register()
        _ = state.register()
        // Fed in pieces, as reads would deliver it: split where the input has a 0xff byte.
        for piece in bytes.split(separator: 0xff, omittingEmptySubsequences: false) {
            do {
                for line in try lines.append(piece) {
                    let value = try QMPValue.parse(line)
                    // What we print must be JSON we can read back.
                    let text = value.description
                    guard (try? QMPValue.parse(Array(text.utf8))) != nil else {
                        fatalError("QMPValue printed unparseable JSON: \(text.debugDescription)")
                    }
                    try state.deliver(QMPMessage(value: value))
                }
            } catch let error as QMPError {
                state.fail(error)
                return
            } catch {
                fatalError("QMP pipeline threw a foreign error: \(error)")
            }
        }
        _ = state.waitForReply(id: first, deadline: .distantPast)
        _ = state.takeEvents()
    }
}

/// A harness invariant: unlike `precondition`, the message survives optimised builds, so the
/// fuzzer's crash report says what was violated.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
