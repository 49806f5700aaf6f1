/// What every fuzz target needs besides its entry point (docs/fuzzing.md).
///
/// SwiftPM links an executable with `main` pointing at `<Module>_main`, so libFuzzer's own
/// `main` never runs. Each target defines that symbol and calls `runLibFuzzer`, which hands the
/// command line to libFuzzer's driver: the same flags, the same behaviour as a C harness.

/// libFuzzer's driver (in the toolchain's `libclang_rt.fuzzer`, linked by `-sanitize=fuzzer`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// Runs libFuzzer with the process's command line, calling `testOneInput` for every input.
public func runLibFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                         _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, testOneInput)
}

/// libFuzzer's input as the byte array the entry points take.
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: data, count: size))
}
