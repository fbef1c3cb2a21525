/// The build options that not every engine supports. A build needs every feature its request uses; a builder
/// offers the features its engine supports; a build is only ever claimed by a builder that offers all it needs,
/// and refused at intake (422) when no builder in the pool does.
///
/// | feature | podman | docker (classic) | docker (`buildkit=true`) | buildkit |
/// |---|---|---|---|---|
/// | build args, target, platform, labels, no-cache | yes | yes | yes | yes |
/// | secrets (`RUN --mount=type=secret`) | yes | no | no (needs a BuildKit session) | yes |
/// | cache import (`cacheFrom`) | yes | no (local images only) | no | yes |
/// | cache export (`cacheTo`) | yes | no | no | yes |
package struct BuildFeatures: OptionSet, Sendable, Hashable {
    package let rawValue: Int
    package init(rawValue: Int) { self.rawValue = rawValue }

    package static let secrets = BuildFeatures(rawValue: 1 << 0)
    package static let cacheImport = BuildFeatures(rawValue: 1 << 1)
    package static let cacheExport = BuildFeatures(rawValue: 1 << 2)

    /// The parameter names, for error messages.
    package var names: [String] {
        [(BuildFeatures.secrets, "secret"), (.cacheImport, "cacheFrom"), (.cacheExport, "cacheTo")]
            .filter { contains($0.0) }.map(\.1)
    }
}

extension BuildRequest {
    /// The features this request needs from its builder.
    package var requiredFeatures: BuildFeatures {
        var features: BuildFeatures = []
        if !secrets.isEmpty { features.insert(.secrets) }
        if !cacheFrom.isEmpty { features.insert(.cacheImport) }
        if cacheTo != nil { features.insert(.cacheExport) }
        return features
    }
}

extension BuilderEndpoint {
    /// The features this builder's engine supports (see `BuildFeatures`).
    package var supportedFeatures: BuildFeatures {
        switch engine {
        case .podman, .buildkit: [.secrets, .cacheImport, .cacheExport]
        case .docker: []
        }
    }
}
