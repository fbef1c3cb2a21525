import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Claims queued builds and runs them on the builder pool, one `Service` for the whole pool.
///
/// For every endpoint with a free slot it claims the oldest queued build (one statement, with a lease), runs it
/// through the endpoint's driver, streams the driver's events into the build log, and settles the result. While
/// builds run it renews their leases and picks up cancellation requests; a build's `timeout` cancels its driver.
/// A slot is freed only when the driver returns, which drivers promise happens after the engine stopped.
///
/// On graceful shutdown it stops claiming and waits for the builds it is running.
package final class BuildDispatcher: Service {
    package struct Configuration: Sendable {
        /// How long a claim stays valid without renewal; after that the lease reaper settles the build.
        package var leaseDuration: Duration = .seconds(15)
        /// How often leases are renewed and cancellation requests checked.
        package var renewInterval: Duration = .seconds(1)
        /// How often an idle dispatcher looks for work when nobody wakes it.
        package var pollInterval: Duration = .seconds(1)
        /// How many of the oldest queued builds one look at the queue considers.
        package var lookahead = 200
        /// Tries per build when its builder vanishes before a result (the first and two retries elsewhere).
        package var maxAttempts = 3
        /// Queue TTL of a build put back for another attempt.
        package var retryQueueTTL: Duration = .seconds(3600)
        /// On graceful shutdown, how long running builds may take to finish before they are settled as
        /// `interrupted` (as after a crash) and their drivers are cancelled.
        package var shutdownGracePeriod: Duration = .seconds(240)

        package init() {}
    }

    private let queue: any BuildQueue
    private let logs: any BuildLogStore
    private let contexts: any ContextStore
    private let pool: BuilderPool
    private let drivers: [BuilderEngine: any BuilderDriver]
    private let credentials: @Sendable (TenantID, String) async -> RegistryCredential?
    private let secrets: @Sendable (TenantID, [String]) async throws -> [String: SecretValue]
    private let sourceFetcher: (any SourceFetcher)?
    private let cloneCredentials: @Sendable (Build) async -> GitCredential?
    private let observer: any BuildObserver
    private let configuration: Configuration
    private let logger: Logger
    /// Unique per process run, so a restarted gateway never mistakes an old lease for its own.
    package let owner: String

    private struct State {
        /// The builds running here, as claimed, with the signal that stops each.
        var running: [BuildID: (build: Build, cancellation: CancellationSignal)] = [:]
        /// Graceful shutdown has begun.
        var isDraining = false
        /// Settled as `interrupted` at shutdown: their drivers' late outcomes are not recorded.
        var interrupted: Set<BuildID> = []
        /// The periodic look is due: the queue is read even with every slot taken (why builds wait, the metrics).
        var periodicLookDue = true
    }
    /// Why each queued build waits, as of the last look at the queue.
    package let queueReasons = QueueReasons()
    private let state = Mutex(State())
    private let settler: BuildSettler
    /// Deadlines (build timeouts, leases, the shutdown grace) are this clock's; polling cadence is real time.
    private let clock: any GatewayClock
    private let wakeUp: AsyncStream<Void>.Continuation
    private let wakeUps: AsyncStream<Void>

    package init(
        queue: any BuildQueue,
        logs: any BuildLogStore,
        contexts: any ContextStore,
        pool: BuilderPool,
        drivers: [BuilderEngine: any BuilderDriver],
        credentials: @escaping @Sendable (TenantID, String) async -> RegistryCredential? = { _, _ in nil },
        secrets: @escaping @Sendable (TenantID, [String]) async throws -> [String: SecretValue] = { _, _ in [:] },
        sourceFetcher: (any SourceFetcher)? = nil,
        cloneCredentials: @escaping @Sendable (Build) async -> GitCredential? = { _ in nil },
        observer: any BuildObserver = NoBuildObserver(),
        settler: BuildSettler? = nil,
        clock: any GatewayClock = SystemClock(),
        configuration: Configuration = .init(),
        logger: Logger
    ) {
        self.clock = clock
        self.queue = queue
        self.logs = logs
        self.contexts = contexts
        self.pool = pool
        self.drivers = drivers
        self.credentials = credentials
        self.secrets = secrets
        self.sourceFetcher = sourceFetcher
        self.cloneCredentials = cloneCredentials
        self.observer = observer
        self.configuration = configuration
        self.logger = logger
        self.owner = "dispatcher-\(UUID().uuidString.lowercased())"
        // The process's one settler when given, so this dispatcher's settlements and others' are serialized.
        self.settler = settler ?? BuildSettler(store: queue, logs: logs, observer: observer, logger: logger)
        (self.wakeUps, self.wakeUp) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Whether graceful shutdown has begun: nothing new is claimed; running builds get their grace.
    package var isDraining: Bool { state.withLock { $0.isDraining } }

    /// Asks the dispatcher to look for work now (e.g. right after a build was queued).
    package func wake() {
        wakeUp.yield()
    }

    package func run() async throws {
        // Discarding: a finished build's task is freed at once, however long the dispatcher runs.
        await withDiscardingTaskGroup { group in
            group.addTask { await self.renewLeasesUntilCancelled() }
            group.addTask { await self.ringPeriodically() }
            group.addTask {
                // A builder appeared, recovered or freed a slot: queued builds may run now.
                for await _ in self.pool.changed { self.wake() }
            }
            await withGracefulShutdownHandler {
                for await _ in self.wakeUps {
                    await self.claimForFreeSlots(into: &group)
                }
            } onGracefulShutdown: {
                self.state.withLock { $0.isDraining = true }
                self.wakeUp.finish()
            }
            await self.waitForRunningBuilds(upTo: configuration.shutdownGracePeriod)
            await self.interruptRunningBuilds()
            group.cancelAll()
        }
    }

    // MARK: - Claiming

    /// Looks at the oldest dispatchable builds, places each one the pool can take now (cache affinity, capacity,
    /// health, features) and runs it as a child task; records why the others wait.
    ///
    /// A wake-up (a build queued, a slot freed) reads the queue only when some builder has a free slot: with every
    /// slot taken it could place nothing, and a burst of intake would otherwise read the queue once per build. The
    /// periodic look (every `pollInterval`) always reads it, for why builds wait and the queue-depth metric.
    private func claimForFreeSlots(into group: inout DiscardingTaskGroup) async {
        let periodic = state.withLock { state in
            defer { state.periodicLookDue = false }
            return state.periodicLookDue
        }
        guard periodic || pool.hasFreeSlot else { return }
        let candidates: [Build]
        do {
            candidates = try await queue.dispatchable(limit: configuration.lookahead)
        } catch {
            logger.error("reading the queue failed", metadata: ["buildgate.error": "\(error)"])
            return
        }
        if periodic, let counts = try? await queue.activeCounts() { BuildGateMetrics.queueDepth(counts) }
        var activeKeys = (try? await queue.activeRunKeys()) ?? []
        var reasons: [BuildID: String] = [:]
        for build in candidates {
            if build.runPolicy == .serial, let key = build.runKey, activeKeys.contains(key) {
                reasons[build.id] = "waiting for the running build of the same run key (serial)"
                continue
            }
            let endpoint: BuilderEndpoint
            switch pool.choose(for: build) {
            case .wait(let reason):
                reasons[build.id] = reason
                continue
            case .endpoint(let chosen):
                endpoint = chosen
            }
            guard pool.reserve(endpoint.name, for: build.id) else { continue }
            let claimed: Build?
            do {
                let now = clock.now
                claimed = try await queue.claim(
                    build.id, builder: endpoint.name, capacity: endpoint.capacity, owner: owner,
                    leaseUntil: now + configuration.leaseDuration, now: now)
            } catch {
                logger.error("claiming a build failed", metadata: ["buildgate.error": "\(error)"])
                claimed = nil
            }
            guard let claimed else {
                // Taken by another dispatcher, cancelled, or its tenant reached its limit meanwhile.
                pool.release(endpoint.name, for: build.id)
                continue
            }
            if let key = claimed.runKey { activeKeys.insert(key) }
            BuildGateMetrics.queueWait(
                (claimed.startedAt ?? clock.now).timeIntervalSince(claimed.createdAt), engine: endpoint.engine)
            let signal = register(claimed)
            await observer.buildChanged(claimed)
            group.addTask {
                await self.execute(claimed, on: endpoint, cancellation: signal)
                self.unregister(claimed.id)
                self.pool.release(endpoint.name, for: claimed.id)
            }
        }
        queueReasons.replace(reasons)
    }

    /// Wakes the claim loop every `pollInterval` for a full look, so work queued by another process is found too.
    private func ringPeriodically() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.pollInterval)
            state.withLock { $0.periodicLookDue = true }
            wakeUp.yield()
        }
    }

    private func register(_ build: Build) -> CancellationSignal {
        let signal = CancellationSignal()
        state.withLock { $0.running[build.id] = (build, signal) }
        return signal
    }

    private func unregister(_ id: BuildID) {
        state.withLock { $0.running[id] = nil }
    }

    /// Returns when no build runs here any more, or when `gracePeriod` of the clock's time has passed.
    private func waitForRunningBuilds(upTo gracePeriod: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [clock] in try? await clock.sleep(for: gracePeriod) }
            group.addTask {
                while self.state.withLock({ !$0.running.isEmpty }) && !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Shutdown past its grace period: every build still running ends `failed`/`interrupted` now, with a line in
    /// its log, exactly as the lease reaper settles a build after a crash; its driver is then cancelled, and what
    /// the driver still reports is dropped.
    private func interruptRunningBuilds() async {
        let running = state.withLock { state in
            state.interrupted.formUnion(state.running.keys)
            return state.running.values.map(\.build)
        }
        for build in running {
            do {
                _ = try await settler.settle(
                    build, on: .shutdownInterrupt, expecting: .lease(owner: owner), at: clock.now)
            } catch {
                logger.error(
                    "settling an interrupted build failed",
                    metadata: ["buildgate.build.id": "\(build.id)", "buildgate.error": "\(error)"])
            }
        }
        if !running.isEmpty {
            logger.warning(
                "shut down with builds still running; settled as interrupted",
                metadata: ["buildgate.builds": "\(running.count)"])
        }
    }

    // MARK: - Running one build

    private func execute(_ build: Build, on endpoint: BuilderEndpoint, cancellation: CancellationSignal) async {
        var buildLogger = self.logger
        buildLogger[metadataKey: "buildgate.build.id"] = "\(build.id)"
        buildLogger[metadataKey: "buildgate.builder.endpoint"] = "\(endpoint.name)"
        let logger = buildLogger
        let id = build.id
        let log: @Sendable (String) async -> Void = { [logs] line in
            do { try await logs.appendGatewayLine(line, to: id) } catch {
                logger.error("writing the build log failed", metadata: ["buildgate.error": "\(error)"])
            }
        }
        let claimed = BuildLifecycle.transition(
            from: .queued,
            on: .claimed(builder: "\(endpoint)", attempt: build.attempt, maxAttempts: configuration.maxAttempts))
        if let line = claimed?.logLine { await log(line) }

        guard let driver = drivers[endpoint.engine] else {
            let outcome = BuildOutcome.failed(
                .builderUnavailable, message: "no driver for engine \(endpoint.engine.rawValue)")
            await settle(build, on: endpoint, outcome: outcome, timedOut: false, logger: logger)
            return
        }
        let (outcome, timedOut) = await runRacingDeadline(
            timeoutSeconds: build.request.timeoutSeconds, cancellation: cancellation, log: log
        ) {
            let prepared: Build
            let context: BuildContext
            switch await self.prepare(build, log: log) {
            case .ready(let build, let fetched): (prepared, context) = (build, fetched)
            case .failed(let outcome): return outcome
            }
            var registryCredentials: [String: RegistryCredential] = [:]
            for image in prepared.request.images {
                if let credential = await self.credentials(prepared.tenant, image.registry) {
                    registryCredentials[image.registry] = credential
                }
            }
            // The claim already matched features; a pool changed under a queued build is caught here.
            let unsupported = prepared.request.requiredFeatures.subtracting(endpoint.supportedFeatures)
            guard unsupported.isEmpty else {
                return .failed(
                    .buildFailed,
                    message: "builder \(endpoint.name) does not support \(unsupported.names.joined(separator: ", "))")
            }
            let secrets: [String: SecretValue]
            do {
                secrets = try await self.secrets(prepared.tenant, prepared.request.secrets)
            } catch {
                return .failed(.builderUnavailable, message: "reading the build's secrets failed")
            }
            if let missing = prepared.request.secrets.first(where: { secrets[$0] == nil }) {
                return .failed(.buildFailed, message: "secret '\(missing)' is no longer set for this tenant")
            }
            let job = BuildJob(
                id: prepared.id, request: prepared.request, context: context,
                contextPath: self.contexts.path(of: context), registryCredentials: registryCredentials,
                secrets: secrets)
            let redactor = SecretRedactor(secrets.values)
            let outcome = await driver.run(job, on: endpoint) { event in
                await self.handle(event, of: job.id, redactor: redactor, log: log, logger: logger)
            }
            guard case .failed(let reason, let message) = outcome else { return outcome }
            return .failed(reason, message: redactor.redact(message))
        }
        if case .failed(.builderUnavailable, let message) = outcome {
            // The builder is gone or unreachable: out of rotation until a probe finds it again.
            pool.record(endpoint.name, health: .unhealthy, error: message)
            if !timedOut, build.attempt < configuration.maxAttempts,
                await retry(build, on: endpoint, message: message, log: log, logger: logger)
            {
                return
            }
        }
        await settle(build, on: endpoint, outcome: outcome, timedOut: timedOut, logger: logger)
    }

    /// Puts a build whose builder vanished back in the queue for another builder. False when it cannot be (the
    /// lease moved on, or a cancel was asked for): then it is settled as it ended.
    private func retry(
        _ build: Build, on endpoint: BuilderEndpoint, message: String, log: @Sendable (String) async -> Void,
        logger: Logger
    ) async -> Bool {
        do {
            guard
                let requeued = try await queue.requeueForRetry(
                    build.id, owner: owner, queueExpiresAt: clock.now + configuration.retryQueueTTL)
            else { return false }
            let retry = BuildLifecycle.transition(
                from: build.status,
                on: .infrastructureRetry(
                    attempt: build.attempt, maxAttempts: configuration.maxAttempts, builder: endpoint.name,
                    message: message))
            if let line = retry?.logLine { await log(line) }
            await observer.buildChanged(requeued)
            wake()
            return true
        } catch {
            logger.error("requeueing the build failed", metadata: ["buildgate.error": "\(error)"])
            return false
        }
    }

    private enum RaceResult: Sendable {
        case driver(BuildOutcome)
        case deadline
        case cancelRequested
        /// A racer that was cancelled because the race is being decided.
        case stopped
    }

    private enum Preparation {
        /// The build as its driver gets it, with its context.
        case ready(Build, BuildContext)
        /// The build ends before reaching a builder.
        case failed(BuildOutcome)
    }

    /// For a git build without a context: fetches the source, stores the context, and records both. Gives the build
    /// ready for its driver (with OCI source/revision labels for git builds), or the outcome when the fetch failed or
    /// was stopped (cancelled or timed out while fetching).
    private func prepare(_ build: Build, log: @escaping @Sendable (String) async -> Void) async -> Preparation {
        var build = build
        if build.context == nil {
            guard let source = build.gitSource, let sourceFetcher else {
                return .failed(.failed(.sourceFailed, message: "the build has no context and no git source to fetch"))
            }
            await log("fetching \(GitSource.redacted(source.url)) \(source.commit ?? source.ref ?? "")")
            do {
                let credential = await cloneCredentials(build)
                let (context, commit) = try await sourceFetcher.fetch(
                    source, dockerfile: build.request.dockerfile, credential: credential, log: log)
                var resolved = source
                resolved.commit = commit
                guard try await queue.attachContext(build.id, owner: owner, context: context, gitSource: resolved)
                else {
                    return .failed(
                        .failed(.sourceFailed, message: "the build's lease was lost while fetching its source"))
                }
                build.context = context
                build.gitSource = resolved
                await log("fetched commit \(commit): context \(context.digest) (\(context.size) bytes)")
            } catch {
                if Task.isCancelled {
                    return .failed(.failed(.cancelled, message: "stopped while fetching the source"))
                }
                let message = (error as? BuildGateError)?.message ?? "\(error)"
                await log("ERROR: fetching the source failed: \(message)")
                return .failed(.failed(.sourceFailed, message: "fetching the source failed: \(message)"))
            }
        }
        guard let context = build.context else {
            return .failed(.failed(.sourceFailed, message: "the build has no context"))
        }
        if let source = build.gitSource, let commit = source.commit {
            // The OCI annotations that say where an image came from, unless the user set them.
            let labels = [
                "org.opencontainers.image.revision": commit,
                "org.opencontainers.image.source": GitSource.redacted(source.url),
            ]
            build.request.labels.merge(labels) { userValue, _ in userValue }
        }
        return .ready(build, context)
    }

    /// Runs `operation` (fetch and driver) until it returns. The build's deadline or a cancel request cancels it,
    /// and then we still wait for its outcome: drivers return only once the engine stopped.
    private func runRacingDeadline(
        timeoutSeconds: Int,
        cancellation: CancellationSignal,
        log: @escaping @Sendable (String) async -> Void,
        operation: @escaping @Sendable () async -> BuildOutcome
    ) async -> (BuildOutcome, timedOut: Bool) {
        let timeout = Duration.seconds(timeoutSeconds)
        return await withTaskGroup(of: RaceResult.self) { [clock] group in
            group.addTask { .driver(await operation()) }
            group.addTask {
                do { try await clock.sleep(for: timeout) } catch { return .stopped }
                return .deadline
            }
            group.addTask {
                await cancellation.wait()
                return Task.isCancelled ? .stopped : .cancelRequested
            }
            var timedOut = false
            var stopping = false
            while let result = await group.next() {
                switch result {
                case .driver(let outcome):
                    group.cancelAll()
                    return (outcome, timedOut)
                case .deadline where !stopping:
                    timedOut = true
                    stopping = true
                    await log("timeout of \(timeoutSeconds)s reached; stopping the build")
                    group.cancelAll()
                case .cancelRequested where !stopping:
                    stopping = true
                    await log("cancellation requested; stopping the build")
                    group.cancelAll()
                case .deadline, .cancelRequested, .stopped:
                    continue
                }
            }
            preconditionFailure("the driver's task always reports")
        }
    }

    private func handle(
        _ event: BuildEvent, of id: BuildID, redactor: SecretRedactor, log: @Sendable (String) async -> Void,
        logger: Logger
    ) async {
        switch event {
        case .accepted(let engine):
            if let line = BuildLifecycle.transition(from: .starting, on: .engineAccepted(engine: engine))?.logLine {
                await log(line)
            }
            do {
                if try await queue.markRunning(id, owner: owner), let running = try await queue.build(id) {
                    await observer.buildChanged(running)
                }
            } catch {
                logger.error("marking the build running failed", metadata: ["buildgate.error": "\(error)"])
            }
        case .output(let text):
            do { try await logs.append(Array(redactor.redact(text).utf8), to: id) } catch {
                // Settled as interrupted at shutdown, its log is complete: a cancelled driver's last words are not news.
                // (Asked only on failure: every piece of build output passes here.)
                if !state.withLock({ $0.interrupted.contains(id) }) {
                    logger.error("writing the build log failed", metadata: ["buildgate.error": "\(error)"])
                }
            }
        case .pushing(let image):
            await log("pushing \(image)")
        case .pushed(let image):
            await log("pushed \(image.reference)@\(image.digest)")
        case .steps(let steps):
            let redacted = steps.map { step in
                var step = step
                step.name = redactor.redact(step.name)
                step.error = step.error.map(redactor.redact)
                return step
            }
            do { _ = try await queue.recordSteps(id, owner: owner, steps: redacted) } catch {
                logger.error("recording the build's steps failed", metadata: ["buildgate.error": "\(error)"])
            }
        }
    }

    private func settle(
        _ build: Build,
        on endpoint: BuilderEndpoint,
        outcome: BuildOutcome,
        timedOut: Bool,
        logger: Logger
    ) async {
        // Shutdown already settled it as interrupted; what its cancelled driver reports now is not news.
        guard !state.withLock({ $0.interrupted.contains(build.id) }) else { return }
        let pushed: [PushedImage]
        if case .succeeded(let images) = outcome { pushed = images } else { pushed = [] }
        do {
            let stored = try await settler.settle(
                build, on: .engineFinished(outcome, timedOut: timedOut), expecting: .lease(owner: owner),
                pushedImages: pushed, at: clock.now)
            if let stored {
                BuildGateMetrics.buildDuration(
                    (stored.finishedAt ?? clock.now).timeIntervalSince(stored.startedAt ?? clock.now),
                    engine: endpoint.engine,
                    result: stored.status)
            } else {
                logger.warning("the build's lease was lost before its result could be stored")
            }
        } catch {
            logger.error("storing the build result failed", metadata: ["buildgate.error": "\(error)"])
        }
    }

    // MARK: - Leases

    private func renewLeasesUntilCancelled() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.renewInterval)
            let ids = state.withLock { Array($0.running.keys) }
            guard !ids.isEmpty else { continue }
            do {
                let cancelled = try await queue.renewLeases(
                    ids, owner: owner, until: clock.now + configuration.leaseDuration)
                let signals = state.withLock { state in cancelled.compactMap { state.running[$0]?.cancellation } }
                for signal in signals { signal.fire() }
            } catch {
                logger.error("renewing leases failed", metadata: ["buildgate.error": "\(error)"])
            }
        }
    }
}

/// A one-shot signal: a cancel request for one running build.
final class CancellationSignal: Sendable {
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init() {
        (stream, continuation) = AsyncStream.makeStream()
    }

    func fire() { continuation.finish() }

    func wait() async {
        for await _ in stream {}
    }
}
