import Foundation

/// A scratch file removed when released.
final class ScratchFile: @unchecked Sendable {
    let path: String
    init(size: UInt64, pattern: UInt8? = nil) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("bd-\(UUID().uuidString.prefix(8)).img").path
        if let pattern {
            try Data(repeating: pattern, count: Int(size)).write(to: URL(fileURLWithPath: path))
        } else {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: size)
            try handle.close()
        }
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    var contents: [UInt8] { [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()) }
}

func bytes(_ count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}
