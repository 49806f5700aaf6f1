import NBDClient
import NBDProtocol

/// Text and JSON renderings for `swiftnbd info`. Field names follow nbdinfo where they overlap
/// (`export-name`, `export-size`, `is_read_only`, `can_flush`, `block_size_minimum`…).
enum InfoFormatter {
    // MARK: Shared facts

    static func protocolName(_ style: HandshakeStyle) -> String {
        switch style {
        case .oldstyle: "oldstyle"
        case .newstyle: "newstyle"
        case .fixedNewstyle: "newstyle-fixed"
        }
    }

    static func packets(_ mode: NBDReplyMode) -> String {
        switch mode {
        case .simple: "simple"
        case .structured: "structured"
        case .extended: "extended"
        }
    }

    static func booleanFlags(_ e: NegotiatedExport) -> [(String, Bool)] {
        let f = e.flags
        return [
            ("is_rotational", f.contains(.rotational)), ("is_read_only", f.contains(.readOnly)),
            ("can_block_status_payload", f.contains(.blockStatusPayload)),
            ("can_cache", f.contains(.sendCache)), ("can_df", f.contains(.sendDF)),
            ("can_fast_zero", f.contains(.sendFastZero)), ("can_flush", f.contains(.sendFlush)),
            ("can_fua", f.contains(.sendFUA)), ("can_multi_conn", f.contains(.canMultiConn)),
            ("can_trim", f.contains(.sendTrim)), ("can_zero", f.contains(.sendWriteZeroes)),
        ]
    }

    /// Transmission flags in words.
    static func flagWords(_ flags: TransmissionFlags) -> [String] {
        let names: [(TransmissionFlags, String)] = [
            (.readOnly, "read-only"), (.sendFlush, "flush"), (.sendFUA, "fua"), (.rotational, "rotational"),
            (.sendTrim, "trim"), (.sendWriteZeroes, "write-zeroes"), (.sendDF, "df"), (.canMultiConn, "multi-conn"),
            (.sendResize, "resize"), (.sendCache, "cache"), (.sendFastZero, "fast-zero"),
            (.blockStatusPayload, "block-status-payload"),
        ]
        return names.filter { flags.contains($0.0) }.map(\.1)
    }

    static func features(_ e: NegotiatedExport) -> [String] {
        var out: [String] = []
        if e.replyMode == .extended { out.append("extended headers") }
        if e.replyMode != .simple { out.append("structured replies") }
        if e.tlsActive { out.append("TLS") }
        if e.usedExportNameFallback { out.append("EXPORT_NAME fallback") }
        return out
    }

    /// nbdinfo-style human size: 1048576 → "1M".
    static func humanSize(_ bytes: UInt64) -> String {
        let units = ["", "K", "M", "G", "T", "P", "E"]
        var value = bytes
        var unit = 0
        while value >= 1024 && value % 1024 == 0 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 && bytes >= 1024 {
            // Not a whole number of KiB: one decimal, like nbdinfo's "1.5M".
            var scaled = Double(bytes)
            var u = 0
            while scaled >= 1024 && u < units.count - 1 { scaled /= 1024; u += 1 }
            let tenths = Int((scaled * 10).rounded())
            return "\(tenths / 10).\(tenths % 10)\(units[u])"
        }
        return "\(value)\(units[unit])"
    }

    // MARK: Text

    static func exportText(_ e: NegotiatedExport, uri: NBDURI, includeProtocol: Bool = true) -> String {
        var lines: [String] = []
        if includeProtocol {
            lines.append("protocol: \(protocolName(e.handshake)) \(e.tlsActive ? "with" : "without") TLS, using \(packets(e.replyMode)) packets")
        }
        lines.append("export=\"\(e.canonicalName ?? e.requestedName)\":")
        lines.append("\texport-size: \(e.size) (\(humanSize(e.size)))")
        if let d = e.description, !d.isEmpty { lines.append("\tdescription: \(d)") }
        var exportURI = uri
        exportURI.exportName = e.requestedName
        lines.append("\turi: \(exportURI)")
        let contexts = e.availableMetaContexts.isEmpty ? e.metaContexts.map(\.name) : e.availableMetaContexts
        if !contexts.isEmpty {
            lines.append("\tcontexts:")
            for c in contexts { lines.append("\t\t\(c)") }
        }
        for (name, value) in booleanFlags(e) { lines.append("\t\(name): \(value)") }
        if let b = e.blockSizes {
            lines.append("\tblock_size_minimum: \(b.minimum)")
            lines.append("\tblock_size_preferred: \(b.preferred)")
            lines.append("\tblock_size_maximum: \(b.maximumPayload)")
        }
        lines.append("\ttransmission flags: \(flagWords(e.flags).joined(separator: " ")) (0x\(String(e.flags.rawValue, radix: 16)))")
        let f = features(e)
        lines.append("\tnegotiated: \(f.isEmpty ? "simple replies only" : f.joined(separator: ", "))")
        return lines.joined(separator: "\n")
    }

    static func listText(_ exports: [ListedExport], tls: Bool, uri: NBDURI) -> String {
        var out = ["protocol: newstyle-fixed \(tls ? "with" : "without") TLS"]
        if exports.isEmpty { out.append("(the server lists no exports)") }
        for entry in exports {
            if let info = entry.info {
                var text = exportText(info, uri: uri, includeProtocol: false)
                if (info.description ?? "").isEmpty && !entry.listDescription.isEmpty {
                    text = text.replacingFirst("\n\turi:", with: "\n\tdescription: \(entry.listDescription)\n\turi:")
                }
                out.append(text)
            } else {
                out.append("export=\"\(entry.name)\":")
                if !entry.listDescription.isEmpty { out.append("\tdescription: \(entry.listDescription)") }
                out.append("\terror: \(entry.infoError.map { "\($0)" } ?? "no information")")
            }
        }
        return out.joined(separator: "\n")
    }

    static func mapText(_ entries: [InfoMap.Entry], context: String) -> String {
        var out = ""
        for e in entries {
            out += pad(e.offset, 10) + "  " + pad(e.length, 10) + "  " + pad(e.flags, 3) + "  " + InfoMap.describe(e.flags, context: context) + "\n"
        }
        return out
    }

    static func pad(_ value: UInt64, _ width: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }

    // MARK: JSON

    static func exportJSONObject(_ e: NegotiatedExport, uri: NBDURI, listDescription: String? = nil) -> JSONValue {
        var exportURI = uri
        exportURI.exportName = e.requestedName
        var fields: [(String, JSONValue)] = [("export-name", .string(e.canonicalName ?? e.requestedName))]
        if let d = e.description ?? listDescription, !d.isEmpty { fields.append(("description", .string(d))) }
        fields.append(("uri", .string(exportURI.description)))
        let contexts = e.availableMetaContexts.isEmpty ? e.metaContexts.map(\.name) : e.availableMetaContexts
        fields.append(("contexts", .array(contexts.map { .string($0) })))
        for (name, value) in booleanFlags(e) { fields.append((name, .bool(value))) }
        if let b = e.blockSizes {
            fields.append(("block_size_minimum", .number(UInt64(b.minimum))))
            fields.append(("block_size_preferred", .number(UInt64(b.preferred))))
            fields.append(("block_size_maximum", .number(UInt64(b.maximumPayload))))
        }
        fields.append(("transmission_flags", .number(UInt64(e.flags.rawValue))))
        fields.append(("transmission_flag_names", .array(flagWords(e.flags).map { .string($0) })))
        fields.append(("export-size", .number(e.size)))
        fields.append(("export-size-str", .string(humanSize(e.size))))
        return .object(fields)
    }

    static func exportJSON(_ e: NegotiatedExport, uri: NBDURI) -> String {
        JSONValue.object([
            ("protocol", .string(protocolName(e.handshake))),
            ("TLS", .bool(e.tlsActive)),
            ("structured", .bool(e.replyMode != .simple)),
            ("extended", .bool(e.replyMode == .extended)),
            ("exports", .array([exportJSONObject(e, uri: uri)])),
        ]).rendered()
    }

    static func listJSON(_ exports: [ListedExport], tls: Bool, uri: NBDURI) -> String {
        let items: [JSONValue] = exports.map { entry in
            if let info = entry.info { return exportJSONObject(info, uri: uri, listDescription: entry.listDescription) }
            var fields: [(String, JSONValue)] = [("export-name", .string(entry.name))]
            if !entry.listDescription.isEmpty { fields.append(("description", .string(entry.listDescription))) }
            fields.append(("error", .string(entry.infoError.map { "\($0)" } ?? "no information")))
            return .object(fields)
        }
        return JSONValue.object([("protocol", .string("newstyle-fixed")), ("TLS", .bool(tls)), ("exports", .array(items))]).rendered()
    }

    static func mapJSON(_ entries: [InfoMap.Entry], context: String) -> String {
        let items: [JSONValue] = entries.map {
            .object([("offset", .number($0.offset)), ("length", .number($0.length)), ("type", .number($0.flags)),
                     ("description", .string(InfoMap.describe($0.flags, context: context)))])
        }
        return JSONValue.array(items).rendered() + "\n"
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        return self[..<range.lowerBound] + replacement + self[range.upperBound...]
    }
}
