import LibFuzzerDriver
import NBDTLS

/// libFuzzer entry: the bytes are a psktool key file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPSKFile(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TLSFuzzEntryPoints.pskFile(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzPSKFile_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzPSKFile)
}
