#if canImport(Glibc)
import Glibc
#endif

extension ServeCommand {
    /// glibc gives every thread that allocates its own malloc arena (up to 8 per core), and
    /// each arena keeps freed memory: with a reader and workers per connection, 16 clients
    /// left the server at over 30 MiB resident. Two arenas are plenty for threads that
    /// mostly reuse their buffers.
    static func limitMallocArenas() {
        // `mallopt` is declared in <malloc.h>, which Swift's Glibc module does not import.
        typealias MalloptFunction = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let arenaMax: Int32 = -8  // M_ARENA_MAX
        _ = unsafeBitCast(symbol, to: MalloptFunction.self)(arenaMax, 2)
    }
}
