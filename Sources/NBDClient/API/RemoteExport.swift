import BlockDevices
import NBDProtocol

/// A remote NBD export as a `BlockDevice`, so `copy` (and anything else) is device-to-device.
///
/// Holds one or more connections to the same export. Several connections are only opened when
/// the server promises `CAN_MULTI_CONN` (flushes then cover writes made on any connection).
/// Calls are blocking and thread-safe; concurrent callers are spread over the connections.
public final class RemoteExport: BlockDevice, @unchecked Sendable {
    public let connections: [NBDConnection]
    private let nextConnection = ConditionLock()
    private var roundRobin = 0

    public init(connections: [NBDConnection]) {
        precondition(!connections.isEmpty, "RemoteExport needs at least one connection")
        self.connections = connections
    }

    /// Connects `count` times (1 unless the server advertises CAN_MULTI_CONN).
    public static func open(_ uri: NBDURI, connections count: Int = 1,
                            configure: (inout NBDClientConfiguration) -> Void = { _ in }) throws -> RemoteExport {
        let first = try NBDConnection.connect(uri, configure: configure)
        var all = [first]
        if count > 1 && first.export.flags.contains(.canMultiConn) {
            do {
                for _ in 1..<count { all.append(try NBDConnection.connect(uri, configure: configure)) }
            } catch {
                all.forEach { $0.close() }
                throw error
            }
        }
        return RemoteExport(connections: all)
    }

    public var export: NegotiatedExport { connections[0].export }

    /// The connection for the next call (round robin).
    public func connection() -> NBDConnection {
        if connections.count == 1 { return connections[0] }
        return nextConnection.withLock {
            roundRobin = (roundRobin + 1) % connections.count
            return connections[roundRobin]
        }
    }

    // MARK: BlockDevice

    public var size: UInt64 { export.size }

    public var capabilities: BlockDeviceCapabilities {
        let f = export.flags
        var caps: BlockDeviceCapabilities = []
        if f.contains(.readOnly) { caps.insert(.readOnly) }
        if f.contains(.sendFlush) { caps.insert(.flush) }
        if f.contains(.sendFUA) { caps.insert(.fua) }
        if f.contains(.sendTrim) { caps.insert(.trim) }
        if f.contains(.sendWriteZeroes) { caps.insert(.writeZeroes) }
        if f.contains(.sendFastZero) { caps.insert(.fastZero) }
        if f.contains(.sendCache) { caps.insert(.cache) }
        if f.contains(.canMultiConn) { caps.insert(.multiConn) }
        if f.contains(.rotational) { caps.insert(.rotational) }
        if export.metaContextID("base:allocation") != nil { caps.insert(.extents) }
        if export.metaContextID("qemu:allocation-depth") != nil { caps.insert(.allocationDepth) }
        return caps
    }

    public var blockSizes: BlockSizeConstraints {
        let c = connections[0]
        return BlockSizeConstraints(minimum: c.minimumBlockSize, preferred: c.preferredBlockSize, maximumPayload: c.maximumPayload)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try mapped { try connection().read(into: buffer, at: offset) }
    }

    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {
        try mapped { try connection().write(data, at: offset, fua: fua && export.flags.contains(.sendFUA)) }
    }

    public func flush() throws {
        guard export.flags.contains(.sendFlush) else { return }
        // With CAN_MULTI_CONN one flush covers all connections; without it there is only one.
        _ = try mapped { try connections[0].perform(.flush) }
    }

    public func trim(offset: UInt64, length: UInt64, fua: Bool) throws {
        guard export.flags.contains(.sendTrim) else { return } // a hint: skipping is allowed
        try mapped { try eachEffectPiece(offset: offset, length: length) { c, o, l in
            try c.perform(.trim, offset: o, length: l, flags: fua && export.flags.contains(.sendFUA) ? .fua : [])
        } }
    }

    public func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {
        guard export.flags.contains(.sendWriteZeroes) else {
            if fastOnly { throw BlockDeviceError(.notSupported, "export cannot zero quickly") }
            try writeZeroBuffers(offset: offset, length: length, fua: fua)
            return
        }
        if fastOnly && !export.flags.contains(.sendFastZero) {
            throw BlockDeviceError(.notSupported, "export does not support FAST_ZERO")
        }
        var flags: CommandFlags = []
        if !mayTrim { flags.insert(.noHole) }
        if fastOnly { flags.insert(.fastZero) }
        if fua && export.flags.contains(.sendFUA) { flags.insert(.fua) }
        try mapped { try eachEffectPiece(offset: offset, length: length) { c, o, l in
            try c.perform(.writeZeroes, offset: o, length: l, flags: flags)
        } }
    }

    public func cache(offset: UInt64, length: UInt64) throws {
        guard export.flags.contains(.sendCache) else { return }
        try mapped { try eachEffectPiece(offset: offset, length: length) { c, o, l in try c.perform(.cache, offset: o, length: l) } }
    }

    public func extents(offset: UInt64, length: UInt64) throws -> [Extent] {
        guard let id = export.metaContextID("base:allocation") else {
            return [Extent(length: min(length, size - min(offset, size)), flags: [])]
        }
        return try statusExtents(context: id, offset: offset, length: length).map {
            Extent(length: $0.length, flags: ExtentFlags(rawValue: UInt32(truncatingIfNeeded: $0.flags) & 3))
        }
    }

    public func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]? {
        guard let id = export.metaContextID("qemu:allocation-depth") else { return nil }
        return try statusExtents(context: id, offset: offset, length: length).map {
            DepthExtent(length: $0.length, depth: UInt32(truncatingIfNeeded: $0.flags))
        }
    }

    /// One BLOCK_STATUS round for `context`, clamped to the export (the server may return
    /// less than asked; the last extent may run past the request end).
    public func statusExtents(context: UInt32, offset: UInt64, length: UInt64) throws -> [BlockStatusExtent] {
        guard offset < size else { return [] }
        let asked = min(length, size - offset, export.replyMode == .extended ? UInt64.max : UInt64(UInt32.max) & ~4095)
        let reply = try mapped { try connection().perform(.blockStatus, offset: offset, length: asked) }
        guard case .blockStatus(let status) = reply, let extents = status.extentsByContext[context], !extents.isEmpty else {
            throw BlockDeviceError(.io, "BLOCK_STATUS reply has no extents for context \(context)")
        }
        var result: [BlockStatusExtent] = []
        var position = offset
        for extent in extents where position < size {
            let clamped = min(extent.length, size - position)
            result.append(BlockStatusExtent(length: clamped, flags: extent.flags))
            position += clamped
        }
        return result
    }

    public func close() throws {
        for c in connections { c.close() }
    }

    deinit { for c in connections { c.close() } }

    // MARK: Helpers

    /// Splits payload-less commands so compact requests keep 32-bit lengths.
    private func eachEffectPiece(offset: UInt64, length: UInt64, _ body: (NBDConnection, UInt64, UInt64) throws -> Void) throws {
        let c = connection()
        let limit: UInt64 = c.export.replyMode == .extended ? UInt64.max : 1 << 30
        var position = offset
        let end = offset + length
        while position < end {
            let piece = min(limit, end - position)
            try body(c, position, piece)
            position += piece
        }
    }

    private func writeZeroBuffers(offset: UInt64, length: UInt64, fua: Bool) throws {
        let chunk = Int(min(UInt64(connections[0].maximumPayload), 1 << 20))
        let zeroes = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { zeroes.deallocate() }
        zeroes.initializeMemory(as: UInt8.self, repeating: 0)
        var position = offset
        while position < offset + length {
            let n = Int(min(UInt64(chunk), offset + length - position))
            try write(UnsafeRawBufferPointer(rebasing: zeroes[0..<n]), at: position, fua: fua)
            position += UInt64(n)
        }
    }

    /// Maps client errors to the storage layer's error, keeping the server's words.
    private func mapped<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as NBDClientError {
            throw Self.blockDeviceError(error)
        }
    }

    static func blockDeviceError(_ error: NBDClientError) -> BlockDeviceError {
        let code: BlockDeviceError.Code
        switch error.code {
        case .commandFailed:
            switch NBDErrno(rawValue: error.errno ?? 5) {
            case .EPERM: code = .readOnly
            case .ENOSPC: code = .noSpace
            case .EINVAL: code = .invalidArgument
            case .ENOTSUP: code = .notSupported
            case .ESHUTDOWN: code = .shutdown
            default: code = .io
            }
        case .notSupported: code = .notSupported
        case .invalidArgument: code = .outOfRange
        default: code = .io
        }
        return BlockDeviceError(code, error.description)
    }
}
