import Foundation
import Prometheus

/// The service's Prometheus metrics, on a registry of its own (no process-wide metrics system, so several
/// services — tests — can live in one process).
public final class ServiceMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()

    private let batchInputs: ValueHistogram
    private let batchTokens: ValueHistogram
    private let batchSeconds: DurationHistogram
    private let queuedTokens: Gauge
    private let tokens: Counter
    private let truncated: Counter

    private static let latencyBuckets: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
        .map { Duration.milliseconds(Int64($0 * 1000)) }

    public init() {
        batchInputs = registry.makeValueHistogram(
            descriptor: .init(namespace: "gemma_encoder", metricName: "batch", unitName: "inputs",
                              helpText: "Inputs per forward pass"),
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        batchTokens = registry.makeValueHistogram(
            descriptor: .init(namespace: "gemma_encoder", metricName: "batch", unitName: "tokens",
                              helpText: "Tokens per forward pass"),
            buckets: [16, 64, 256, 1024, 4096, 16384, 65536])
        batchSeconds = registry.makeDurationHistogram(
            descriptor: .init(namespace: "gemma_encoder", metricName: "batch_duration", unitName: "seconds",
                              helpText: "Forward pass time"),
            buckets: Self.latencyBuckets)
        queuedTokens = registry.makeGauge(
            descriptor: .init(namespace: "gemma_encoder", metricName: "queue", unitName: "tokens",
                              helpText: "Tokens waiting for a forward pass"))
        tokens = registry.makeCounter(
            descriptor: .init(namespace: "gemma_encoder", metricName: "tokens", unitName: "total",
                              helpText: "Tokens accepted for encoding"))
        truncated = registry.makeCounter(
            descriptor: .init(namespace: "gemma_encoder", metricName: "truncated_inputs", unitName: "total",
                              helpText: "Inputs cut to the maximum length because the request set truncate"))
    }

    public func recordBatch(inputs: Int, tokens: Int, seconds: Double) {
        batchInputs.record(Double(inputs))
        batchTokens.record(Double(tokens))
        batchSeconds.record(.nanoseconds(Int64(seconds * 1e9)))
    }

    public func setQueuedTokens(_ count: Int) { queuedTokens.set(Double(count)) }

    public func recordInputs(tokens count: Int, truncated cut: Int) {
        tokens.increment(by: Int64(count))
        if cut > 0 { truncated.increment(by: Int64(cut)) }
    }

    /// One finished HTTP request: counted per route and status, timed per route.
    public func recordRequest(route: String, status: Int, seconds: Double) {
        registry.makeCounter(
            descriptor: .init(namespace: "gemma_encoder", metricName: "http_requests", unitName: "total",
                              helpText: "HTTP requests by route and status"),
            labels: [("route", route), ("status", String(status))]).increment()
        registry.makeDurationHistogram(
            descriptor: .init(namespace: "gemma_encoder", metricName: "http_request_duration", unitName: "seconds",
                              helpText: "HTTP request latency by route"),
            labels: [("route", route)], buckets: Self.latencyBuckets)
            .record(.nanoseconds(Int64(seconds * 1e9)))
    }

    /// The Prometheus text exposition.
    public func exposition() -> String { registry.emitToString() }
}
