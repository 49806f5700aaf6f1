import NBDClient
import NBDProtocol

/// Walks an export with BLOCK_STATUS and merges neighbouring extents of equal status.
enum InfoMap {
    struct Entry: Equatable {
        var offset: UInt64
        var length: UInt64
        var flags: UInt64
    }

    static func extents(_ connection: NBDConnection, context: String) throws -> [Entry] {
        guard let id = connection.export.metaContextID(context) else {
            throw NBDClientError(.notSupported, "server did not agree to metadata context '\(context)'")
        }
        let device = RemoteExport(connections: [connection])
        var result: [Entry] = []
        var offset: UInt64 = 0
        let size = connection.export.size
        // A bound on rounds: every round advances by at least one byte, and real servers by far more.
        var rounds = 0
        while offset < size {
            rounds += 1
            if rounds > 50_000_000 { throw NBDClientError(.protocolViolation, "server's extents do not advance") }
            let extents = try device.statusExtents(context: id, offset: offset, length: size - offset)
            for extent in extents {
                if var last = result.last, last.flags == extent.flags, last.offset + last.length == offset {
                    last.length += extent.length
                    result[result.count - 1] = last
                } else {
                    result.append(Entry(offset: offset, length: extent.length, flags: extent.flags))
                }
                offset += extent.length
            }
        }
        return result
    }

    /// nbdinfo's words for a context's status values.
    static func describe(_ flags: UInt64, context: String) -> String {
        if context == "base:allocation" {
            switch flags {
            case 0: return "data"
            case 1: return "hole"
            case 2: return "zero"
            case 3: return "hole,zero"
            default: return "\(flags)"
            }
        }
        if context == "qemu:allocation-depth" {
            switch flags {
            case 0: return "absent"
            case 1: return "local"
            default: return "backing depth \(flags)"
            }
        }
        if context.hasPrefix("qemu:dirty-bitmap:") {
            return flags & 1 != 0 ? "dirty" : "clean"
        }
        return ""
    }
}
