import LibFuzzerDriver
import NBDProtocol

/// libFuzzer entry: a configuration byte, then what a client sends (see ProtocolFuzzEntryPoints.serverNegotiation).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerNegotiation(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    ProtocolFuzzEntryPoints.serverNegotiation(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzServerNegotiation_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzServerNegotiation)
}
