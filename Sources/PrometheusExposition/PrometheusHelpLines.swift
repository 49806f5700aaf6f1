/// Adds `# HELP` lines to a Prometheus text exposition that lacks them.
///
/// Metrics created through the swift-metrics API carry no help text, so swift-prometheus emits
/// only `# TYPE name type` per family, and `promtool check metrics` rejects families without
/// help. This puts `# HELP name text` before each `# TYPE` line whose name has an entry in
/// `help` (escaped as the format requires); everything else passes through unchanged.
public enum PrometheusHelpLines {
    public static func inserting(into exposition: [UInt8], help: [String: String]) -> [UInt8] {
        let typePrefix = Array("# TYPE ".utf8)
        var result: [UInt8] = []
        result.reserveCapacity(exposition.count + help.count * 96)
        var lineStart = 0
        while lineStart < exposition.count {
            let newline = exposition[lineStart...].firstIndex(of: UInt8(ascii: "\n"))
            let lineEnd = newline.map { $0 + 1 } ?? exposition.count
            let line = exposition[lineStart..<lineEnd]
            if line.starts(with: typePrefix) {
                let nameStart = lineStart + typePrefix.count
                let nameEnd = exposition[nameStart..<lineEnd].firstIndex(of: UInt8(ascii: " ")) ?? nameStart
                let name = String(decoding: exposition[nameStart..<nameEnd], as: UTF8.self)
                if let text = help[name] {
                    result += Array("# HELP \(name) ".utf8)
                    result += Array(PrometheusText.escapedHelp(text).utf8)
                    result.append(UInt8(ascii: "\n"))
                }
            }
            result += line
            lineStart = lineEnd
        }
        return result
    }
}
