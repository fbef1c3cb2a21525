import BuildGateCore

extension Collection<BuildStatus> {
    /// `('starting', 'running')`: the set for `status IN …`, spelled from the named sets of `BuildStatus`.
    var sqlList: String { "(" + map { "'\($0.rawValue)'" }.joined(separator: ", ") + ")" }
}
