// libFuzzer entry point for the context archive validator (compiled with its sources into one module by
// scripts/fuzz). Feeds the input in two chunks split at a place the input itself chooses, as an upload arrives.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzArchiveValidator(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    var limits = ContextArchiveValidator.Limits()
    limits.maxExpandedSize = 64 << 20
    limits.maxEntries = 10_000
    var validator = ContextArchiveValidator(dockerfile: "Dockerfile", limits: limits)
    let split = size > 0 ? Int(bytes[0]) % (size + 1) : 0
    do {
        try validator.consume(UnsafeRawBufferPointer(rebasing: bytes[..<split]))
        try validator.consume(UnsafeRawBufferPointer(rebasing: bytes[split...]))
        _ = try validator.finish()
    } catch {}
    return 0
}
