/// Hears about every status change of every build (queued, starting, running, and the result).
///
/// Called after the change is committed; must return quickly (queue the work) and never fails the build.
package protocol BuildObserver: Sendable {
    func buildChanged(_ build: Build) async
}

/// An observer that does nothing.
package struct NoBuildObserver: BuildObserver {
    package init() {}
    package func buildChanged(_ build: Build) async {}
}
