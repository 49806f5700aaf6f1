import CoreMetrics
import Foundation
import NBDServer
import Qcow2

/// Carries the qcow2 driver's own counters (cache hits and misses, metadata writes) into
/// swift-metrics counters, once per scrape rather than once per lookup: the driver counts
/// under locks it holds anyway, so the data path pays nothing for these metrics. Lives in the
/// CLI because only the CLI knows both the image type and the export it serves.
final class Qcow2MetricsCollector: @unchecked Sendable {
    private struct Source {
        let image: Qcow2Image
        let hits: [Counter]        // l2, refcount
        let misses: [Counter]      // l2, refcount
        let writes: [Counter]      // l1, l2, refcount
        var last = [UInt64](repeating: 0, count: 7)
    }

    private let lock = NSLock()
    private var sources: [Source] = []

    /// - Parameter exports: (export name, device) pairs; devices other than qcow2 images are skipped.
    init(exports: [(name: String, device: Any)], factory: any MetricsFactory) {
        for (name, device) in exports {
            guard let image = device as? Qcow2Image else { continue }
            func counter(_ label: String, _ key: String, _ value: String) -> Counter {
                Counter(label: label, dimensions: [("export", name), (key, value)], factory: factory)
            }
            sources.append(Source(
                image: image,
                hits: ["l2", "refcount"].map { counter(NBDServerMetrics.metadataCacheHits, "cache", $0) },
                misses: ["l2", "refcount"].map { counter(NBDServerMetrics.metadataCacheMisses, "cache", $0) },
                writes: ["l1", "l2", "refcount"].map { counter(NBDServerMetrics.metadataWrites, "kind", $0) }))
        }
    }

    /// Advances every counter to the driver's current value (called before each scrape).
    func refresh() {
        lock.withLock {
            for index in sources.indices {
                let stats = sources[index].image.metadataStatistics
                let now: [UInt64] = [stats.l2Cache.hits, stats.refcountCache?.hits ?? 0,
                                     stats.l2Cache.misses, stats.refcountCache?.misses ?? 0,
                                     stats.l1Writes, stats.l2Writes, stats.refcountWrites]
                let counters = sources[index].hits + sources[index].misses + sources[index].writes
                for (slot, counter) in counters.enumerated() where slot < now.count {
                    let previous = sources[index].last[slot]
                    // Driver counters only grow; a smaller value would mean a new image, so
                    // nothing is added rather than a negative amount.
                    if now[slot] > previous { counter.increment(by: Int64(clamping: now[slot] - previous)) }
                    sources[index].last[slot] = max(previous, now[slot])
                }
            }
        }
    }
}
