import LibFuzzerDriver
import Qcow2

/// libFuzzer entry: an image file (see Qcow2FuzzEntryPoints.image).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQcow2(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Qcow2FuzzEntryPoints.image(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzQcow2_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzQcow2)
}
