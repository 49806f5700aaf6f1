import BlockDevices

/// Persistent dirty bitmaps of the image (`Qcow2PersistentBitmaps`): recording changes,
/// writing them back, and reading them for `qemu:dirty-bitmap:NAME`.
extension Qcow2Image {
    /// The bitmaps object when the image has bitmaps and they loaded.
    var loadedBitmaps: Qcow2PersistentBitmaps? {
        bitmapLock.withLock { if case .loaded(let b) = bitmapState { b } else { nil } }
    }

    /// Loads the bitmaps of a read-only image on first use (a writable image loaded them at
    /// open). Nil when the image has none.
    func bitmaps() throws -> Qcow2PersistentBitmaps? {
        try bitmapLock.withLock {
            switch bitmapState {
            case .loaded(let b): return b
            case .none: return nil
            case .failed(let error): throw error
            case .notLoaded:
                guard header.hasBitmapsExtension else { bitmapState = .none; return nil }
                guard header.autoclear.contains(.bitmaps) else {
                    let error = BlockDeviceError(.unsupportedFeature, "qcow2: \(path): the persistent bitmaps are stale (autoclear bit 0 is clear: a program without bitmap support wrote the image)")
                    bitmapState = .failed(error)
                    throw error
                }
                do {
                    let b = try Qcow2PersistentBitmaps(file: file, header: header, virtualSize: size, writable: false)
                    bitmapState = .loaded(b)
                    return b
                } catch let error as BlockDeviceError {
                    bitmapState = .failed(error)
                    throw error
                }
            }
        }
    }

    /// Every persistent bitmap in the image's directory.
    public func persistentBitmaps() throws -> [Qcow2BitmapInfo] {
        try bitmaps()?.infos ?? []
    }

    /// The named bitmap, if it can be exported: it exists, was saved consistently (not
    /// `in_use`) and this driver understands it. Each refusal names the reason.
    public func exportableBitmap(named name: String) throws -> Qcow2BitmapInfo {
        let all = try persistentBitmaps()
        guard let info = all.first(where: { $0.name == name }) else {
            let known = all.isEmpty ? "the image has no persistent bitmaps" : "its bitmaps: " + all.map { "'\($0.name)'" }.joined(separator: ", ")
            throw BlockDeviceError(.notFound, "qcow2: bitmap '\(name)' not found in \(path) (\(known))")
        }
        if info.inconsistent {
            throw BlockDeviceError(.unsupportedFeature, "qcow2: bitmap '\(name)' in \(path) is inconsistent (in use: not saved correctly, e.g. after a crash); QEMU refuses it too — remove it (qemu-img bitmap --remove) and start a new one")
        }
        if let problem = info.problem {
            throw BlockDeviceError(.unsupportedFeature, "qcow2: bitmap '\(name)' in \(path) cannot be used: it \(problem)")
        }
        return info
    }

    /// Clean and dirty runs of a bitmap over `[offset, offset + length)`, at most `maxRuns`.
    /// On a writable image this is the live state, changes through this image included.
    public func dirtyRuns(bitmap name: String, offset: UInt64, length: UInt64, maxRuns: Int = 1 << 20) throws -> [Qcow2DirtyRun] {
        try checkRange(offset, length)
        guard let bitmaps = try bitmaps() else {
            throw BlockDeviceError(.notFound, "qcow2: bitmap '\(name)' not found in \(path) (the image has no persistent bitmaps)")
        }
        return try bitmaps.runs(of: name, offset: offset, length: length, maxRuns: max(1, maxRuns))
    }

    /// Bytes of memory a loaded bitmap's bits take.
    public func bitmapMemoryBytes(_ name: String) -> Int? { loadedBitmaps?.memoryBytes(of: name) }

    /// Records a change of content in every enabled bitmap (before the change is made, so a
    /// failed request over-reports at worst).
    func recordChange(offset: UInt64, length: UInt64) {
        loadedBitmaps?.recordChange(offset: offset, length: length)
    }

    /// Writes the changed bitmap chunks; the caller's next sync makes them durable.
    func writeBackBitmaps() throws {
        guard writable, let bitmaps = loadedBitmaps else { return }
        try bitmaps.writeBack(allocate: { try allocateCluster() })
    }

    /// Host clusters (indices) of the image's own metadata a bitmap must never own: the
    /// header, the active L1 table and the L2 tables it points at, the refcount table and its
    /// blocks.
    func metadataClusters(store: RefcountStore) throws -> Set<UInt64> {
        let bits = geometry.clusterBits
        var result: Set<UInt64> = [0]
        func add(_ offset: UInt64, bytes: UInt64) {
            guard bytes > 0 else { return }
            for c in (offset >> bits)...((offset + bytes - 1) >> bits) { result.insert(c) }
        }
        add(header.l1TableOffset, bytes: UInt64(header.l1Size) * 8)
        for index in 0..<tables.l1Count {
            let table = try tables.l1Entry(index) & L2Entry.offsetMask
            if table != 0 { result.insert(table >> bits) }
        }
        add(store.tableOffset, bytes: store.tableClusters << bits)
        for block in store.blockOffsets { result.insert(block >> bits) }
        return result
    }
}
