// libFuzzer entry point for what an engine streams back: the Docker JSON message decoder (in pieces the input
// chooses), BuildKit's base64 protobuf status and buildctl's rawjson lines, rendered as the drivers render them.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEngineStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var decoder = EngineStreamDecoder(maxLineLength: 1 << 16)
    let split = size > 0 ? Int(bytes[0]) % (size + 1) : 0
    var messages = decoder.decode(bytes[..<split])
    messages += decoder.decode(bytes[split...])
    messages += decoder.finish()
    var renderer = BuildKitPlainRenderer()
    for case .buildKitTrace(let aux) in messages {
        if let status = BuildKitStatus(base64: aux) {
            _ = renderer.render(status)
        }
    }
    // The protobuf decoder on raw bytes too, not only on what survives JSON and base64.
    if let status = BuildKitStatus(base64: Data(bytes).base64EncodedString()) {
        _ = renderer.render(status)
    }
    // buildctl's --progress=rawjson lines, as the BuildKit driver reads them.
    for line in bytes.split(separator: UInt8(ascii: "\n")) {
        if let status = BuildKitStatus(rawJSON: Array(line)) { _ = renderer.render(status) }
    }
    _ = renderer.finish()
    return 0
}
