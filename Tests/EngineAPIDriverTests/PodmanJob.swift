import BuildGateCore
import BuildGateTesting
import Foundation

/// A build job of a one-file context (the Dockerfile) written to `directory`, for the driver to run on the test
/// Podman; its image goes nowhere (`127.0.0.1:1`).
func podmanJob(dockerfile: String, in directory: TemporaryDirectory, request: (inout BuildRequest) -> Void = { _ in })
    throws -> BuildJob
{
    var tar = TarWriter()
    tar.file("Dockerfile", dockerfile)
    tar.end()
    let contextPath = "\(directory.path)/context.tar"
    try Data(tar.bytes).write(to: URL(fileURLWithPath: contextPath))
    var buildRequest = BuildRequest(images: [try ImageReference(parsing: "127.0.0.1:1/never:1")])
    request(&buildRequest)
    return BuildJob(
        id: .generate(), request: buildRequest,
        context: BuildContext(
            digest: ContextDigest(sha256: Array(repeating: 0xAA, count: 32)), size: Int64(tar.bytes.count),
            compression: .none),
        contextPath: contextPath, registryCredentials: [:])
}
