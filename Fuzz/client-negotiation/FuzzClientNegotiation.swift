import LibFuzzerDriver
import NBDProtocol

/// libFuzzer entry: two configuration bytes, then what a server sends (see ProtocolFuzzEntryPoints.clientNegotiation).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzClientNegotiation(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = ProtocolFuzzEntryPoints.clientNegotiation(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzClientNegotiation_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzClientNegotiation)
}
