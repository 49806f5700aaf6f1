import LibFuzzerDriver
import NBDServer

/// libFuzzer entry: a framing byte, then request headers and payloads (see TransmissionFuzzEntryPoints).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTransmission(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TransmissionFuzzEntryPoints.requestStream(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzTransmission_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzTransmission)
}
