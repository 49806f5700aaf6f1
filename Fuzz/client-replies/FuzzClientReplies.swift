import LibFuzzerDriver
import NBDClient

/// libFuzzer entry: a mode byte, then what a server sends in transmission (see ClientFuzzEntryPoints.replyStream).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientReplies(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    ClientFuzzEntryPoints.replyStream(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzClientReplies_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzClientReplies)
}
