import BlockDevices
import Logging
import NBDProtocol
import NBDServer
import Qcow2

/// `serve --bitmap NAME` / `--export …,bitmap=NAME`: a qcow2 image's persistent dirty bitmaps
/// offered as the metadata context `qemu:dirty-bitmap:NAME`, like `qemu-nbd -B NAME`.
///
/// Rules (docs/protocol.md §5.5, "Dirty bitmaps"):
/// - the image must be qcow2 (no `--snapshot` overlay: the bitmaps live in the image itself);
/// - the bitmap must exist, be consistent (not `in_use`) and be of a kind we understand; each
///   refusal is an error naming the bitmap, the image and the reason, and the server does not start;
/// - a disabled bitmap reads the same for the whole run;
/// - an enabled bitmap on a read-only export is allowed (nothing can change it while we serve);
/// - an enabled bitmap on a writable export is allowed too, as qemu-nbd allows it: block status
///   shows the live bitmap, so the export's own writes appear in it. A notice says so.
enum ServeBitmaps {
    static func exported(names: [String], spec: ExportSpec, device: any BlockDevice, writable: Bool, snapshot: Bool,
                         logger: Logger) throws -> [ExportedDirtyBitmap] {
        guard !names.isEmpty else { return [] }
        var seen = Set<String>()
        for name in names where !seen.insert(name).inserted {
            throw BlockDeviceError(.invalidArgument, "export '\(spec.name)': bitmap '\(name)' is given twice")
        }
        if snapshot && writable {
            throw BlockDeviceError(.unsupportedFeature, "export '\(spec.name)': --bitmap cannot be combined with --snapshot (the overlay has no bitmaps)")
        }
        guard let image = device as? Qcow2Image else {
            throw BlockDeviceError(.unsupportedFeature, "export '\(spec.name)': --bitmap needs a qcow2 image (\(spec.path) is served as raw)")
        }
        var result: [ExportedDirtyBitmap] = []
        for name in names {
            let info = try image.exportableBitmap(named: name)
            if info.enabled && writable {
                logger.notice("export '\(spec.name)': bitmap '\(name)' is enabled on a writable export: qemu:dirty-bitmap:\(name) shows live changes, this export's writes included")
            }
            result.append(ExportedDirtyBitmap(name: name) { offset, length, maxRuns in
                try image.dirtyRuns(bitmap: name, offset: offset, length: length, maxRuns: maxRuns).map {
                    BlockStatusExtent(length: $0.length, flags: $0.dirty ? 1 : 0)
                }
            })
        }
        return result
    }
}
