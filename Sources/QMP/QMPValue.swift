import Foundation

/// A JSON value as QMP carries it. Sendable, comparable, and free of `Any`, so replies and
/// events can cross threads and be matched in tests without casts.
public enum QMPValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([QMPValue])
    case object([String: QMPValue])

    public subscript(key: String) -> QMPValue? {
        if case let .object(members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var arrayValue: [QMPValue]? { if case let .array(a) = self { return a }; return nil }
    public var objectValue: [String: QMPValue]? { if case let .object(o) = self { return o }; return nil }

    /// Integers, and doubles that hold an integral value (QEMU never sends those, but be lenient).
    public var intValue: Int64? {
        switch self {
        case let .int(i): return i
        case let .double(d) where d.rounded() == d && abs(d) < 9.0e18: return Int64(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    /// Compact JSON text with keys sorted, so that output is deterministic.
    public var description: String {
        var out = ""
        encode(into: &out)
        return out
    }

    func encode(into out: inout String) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .double(d): out += d.isFinite ? String(d) : "null"
        case let .string(s): QMPValue.encodeString(s, into: &out)
        case let .array(items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += ", " }
                item.encode(into: &out)
            }
            out += "]"
        case let .object(members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += ", " }
                QMPValue.encodeString(key, into: &out)
                out += ": "
                members[key]!.encode(into: &out)
            }
            out += "}"
        }
    }

    private static func encodeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Parses one JSON document. Throws `QMPError` with code `.malformedMessage` on bad input.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> QMPValue {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw QMPError(.malformedMessage, "not valid JSON: \(QMPValue.preview(bytes))")
        }
        return try QMPValue(foundation: object)
    }

    /// Converts JSONSerialization's output. Booleans come back as NSNumber with Objective-C type
    /// `c`; JSON numbers never do (integers are `i`/`q`, reals `d`), which is how we tell them apart.
    init(foundation object: Any) throws {
        switch object {
        case is NSNull: self = .null
        case let s as String: self = .string(s)
        case let n as NSNumber:
            let type = String(cString: n.objCType)
            if type == "c" || type == "B" {
                self = .bool(n.boolValue)
            } else if type == "d" || type == "f" {
                self = .double(n.doubleValue)
            } else if type == "Q" && n.uint64Value > UInt64(Int64.max) {
                self = .double(n.doubleValue)
            } else {
                self = .int(n.int64Value)
            }
        case let a as [Any]: self = .array(try a.map(QMPValue.init(foundation:)))
        case let o as [String: Any]:
            var members: [String: QMPValue] = [:]
            for (key, value) in o { members[key] = try QMPValue(foundation: value) }
            self = .object(members)
        default:
            throw QMPError(.malformedMessage, "unexpected JSON element \(type(of: object))")
        }
    }

    static func preview(_ bytes: some Collection<UInt8>) -> String {
        let text = String(decoding: bytes.prefix(120), as: UTF8.self)
        return bytes.count > 120 ? "\(text)…" : text
    }
}

extension QMPValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: QMPValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, QMPValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
    public init(floatLiteral value: Double) { self = .double(value) }
}
