import Qcow2

/// libFuzzer entry: an image file (see Qcow2FuzzEntryPoints.image).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQcow2(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Qcow2FuzzEntryPoints.image(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

// SwiftPM links executables with main=FuzzQcow2_main, so libFuzzer's own main is not used: this
// hands the command line to libFuzzer's driver instead (same flags, same behaviour).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("FuzzQcow2_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzQcow2)
}
