import LibFuzzerDriver
import QMP

/// libFuzzer entry: the bytes are what QEMU's monitor socket sent (0xff marks read boundaries).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQMP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    QMPFuzzEntryPoints.monitorStream(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzQMP_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzQMP)
}
