import Foundation
import Metrics

/// The gateway's metrics, through swift-metrics (exported by the application as Prometheus text at `/metrics`).
/// Names follow Prometheus conventions; label values are bounded (engines, results, builder names, statuses).
package enum BuildGateMetrics {
    /// Time from queued to claimed, by engine.
    package static func queueWait(_ seconds: TimeInterval, engine: BuilderEngine) {
        Metrics.Timer(label: "buildgate_build_queue_wait_seconds", dimensions: [("engine", engine.rawValue)])
            .recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// Time from claimed to settled, by engine and result status.
    package static func buildDuration(_ seconds: TimeInterval, engine: BuilderEngine, result: BuildStatus) {
        Metrics.Timer(
            label: "buildgate_build_duration_seconds",
            dimensions: [("engine", engine.rawValue), ("result", result.rawValue)]
        )
        .recordNanoseconds(Int64(max(0, seconds) * 1e9))
    }

    /// Builds per active status, as the dispatcher last counted them.
    package static func queueDepth(_ counts: [BuildStatus: Int]) {
        for status in [BuildStatus.queued, .starting, .running] {
            Gauge(label: "buildgate_builds", dimensions: [("status", status.rawValue)]).record(counts[status] ?? 0)
        }
    }

    package static func builder(_ name: String, healthy: Bool, busySlots: Int, capacity: Int) {
        Gauge(label: "buildgate_builder_healthy", dimensions: [("builder", name)]).record(healthy ? 1 : 0)
        Gauge(label: "buildgate_builder_busy_slots", dimensions: [("builder", name)]).record(busySlots)
        Gauge(label: "buildgate_builder_capacity", dimensions: [("builder", name)]).record(capacity)
    }

    // Made on each use (the metrics backend keeps one per name), so none is bound to a backend bootstrapped later.
    package static var uploadedBytes: Counter { Counter(label: "buildgate_upload_bytes_total") }
    package static var activeUploads: Meter { Meter(label: "buildgate_uploads_active") }
    package static var logFollowers: Meter { Meter(label: "buildgate_log_followers") }

    /// A webhook delivery by forge and outcome (`queued`, `ignored`, `redelivery`, `rejected`).
    package static func webhookDelivery(forge: String, outcome: String) {
        Counter(label: "buildgate_webhook_deliveries_total", dimensions: [("forge", forge), ("outcome", outcome)])
            .increment()
    }
}
