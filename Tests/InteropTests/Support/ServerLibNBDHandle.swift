import CLibNBD
import Foundation

/// One libnbd handle (test-only reference client), closed in `deinit`.
final class ServerLibNBDHandle: @unchecked Sendable {
    let handle: OpaquePointer

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    init() throws {
        guard let handle = nbd_create() else { throw Failure(description: "nbd_create: \(Self.lastError)") }
        self.handle = handle
    }

    deinit { nbd_close(handle) }

    static var lastError: String { nbd_get_error().map { String(cString: $0) } ?? "unknown libnbd error" }

    /// Throws the libnbd error message when `result` is negative.
    @discardableResult
    func check<T: BinaryInteger>(_ what: String, _ result: T) throws -> T {
        if result < 0 { throw Failure(description: "\(what): \(Self.lastError)") }
        return result
    }

    /// Export names and descriptions from NBD_OPT_LIST (option mode).
    func listExports() throws -> [(name: String, description: String)] {
        final class Box { var items: [(String, String)] = [] }
        let box = Box()
        let callback = nbd_list_callback(
            callback: { userData, name, description in
                let box = Unmanaged<Box>.fromOpaque(userData!).takeUnretainedValue()
                box.items.append((name.map { String(cString: $0) } ?? "", description.map { String(cString: $0) } ?? ""))
                return 0
            },
            user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        try check("nbd_opt_list", nbd_opt_list(handle, callback))
        return withExtendedLifetime(box) { box.items.map { (name: $0.0, description: $0.1) } }
    }

    /// Context names from NBD_OPT_LIST_META_CONTEXT for the queries added with `nbd_add_meta_context`.
    func listMetaContexts() throws -> [String] {
        final class Box { var names: [String] = [] }
        let box = Box()
        let callback = nbd_context_callback(
            callback: { userData, name in
                Unmanaged<Box>.fromOpaque(userData!).takeUnretainedValue().names.append(name.map { String(cString: $0) } ?? "")
                return 0
            },
            user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        try check("nbd_opt_list_meta_context", nbd_opt_list_meta_context(handle, callback))
        return withExtendedLifetime(box) { box.names }
    }

    /// Block status of `base:allocation` as (length, flags) runs.
    func blockStatus(count: UInt64, offset: UInt64) throws -> [(UInt32, UInt32)] {
        final class Box { var runs: [(UInt32, UInt32)] = [] }
        let box = Box()
        let callback = nbd_extent_callback(
            callback: { userData, context, _, entries, count, _ in
                let box = Unmanaged<Box>.fromOpaque(userData!).takeUnretainedValue()
                guard let context, String(cString: context) == "base:allocation", let entries else { return 0 }
                for index in stride(from: 0, to: count - 1, by: 2) {
                    box.runs.append((entries[index], entries[index + 1]))
                }
                return 0
            },
            user_data: Unmanaged.passUnretained(box).toOpaque(), free: nil)
        try check("nbd_block_status", nbd_block_status(handle, count, offset, callback, 0))
        return withExtendedLifetime(box) { box.runs }
    }

    /// Waits (bounded) until no command is in flight.
    func drain(maxPolls: Int = 100_000) throws {
        var polls = 0
        while nbd_aio_in_flight(handle) > 0 {
            try check("nbd_poll", nbd_poll(handle, 10_000))
            polls += 1
            if polls > maxPolls { throw Failure(description: "requests still in flight after \(maxPolls) polls") }
        }
    }
}
