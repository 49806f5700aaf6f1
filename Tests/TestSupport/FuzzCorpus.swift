import Foundation

/// The committed seeds and regression inputs of a fuzz target (Fuzz/corpus/TARGET), for the
/// test suites that replay them through the fuzzers' entry points (docs/fuzzing.md). One copy
/// for every test target, so they all read the corpus the same way.
public enum FuzzCorpus {
    /// Every input of `target`, sorted by file name (hidden files skipped).
    public static func inputs(of target: String) throws -> [[UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Fuzz/corpus/\(target)").standardizedFileURL
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { !$0.hasPrefix(".") }.sorted()
        return try names.map { Array(try Data(contentsOf: directory.appendingPathComponent($0))) }
    }
}
