import NBDTLS

/// libFuzzer entry: the bytes are an authorisation pattern, a NUL, and a certificate subject.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDistinguishedName(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TLSFuzzEntryPoints.distinguishedName(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

// SwiftPM links executables with main=FuzzDistinguishedName_main, so libFuzzer's own main is not used: this
// hands the command line to libFuzzer's driver instead (same flags, same behaviour).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("FuzzDistinguishedName_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzDistinguishedName)
}
