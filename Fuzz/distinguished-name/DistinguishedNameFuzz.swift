import LibFuzzerDriver
import NBDTLS

/// libFuzzer entry: the bytes are an authorisation pattern, a NUL, and a certificate subject.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDistinguishedName(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TLSFuzzEntryPoints.distinguishedName(fuzzInput(data, size))
    return 0
}

// SwiftPM's main for this executable: libFuzzer takes over the command line (LibFuzzerDriver).
@_cdecl("FuzzDistinguishedName_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runLibFuzzer(argc, argv, fuzzDistinguishedName)
}
