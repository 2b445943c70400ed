import SwiftProtobuf
public import AtriumAPI
public import GRPCCore
import Synchronization

/// The serving state of a process, as `grpc.health.v1.Health` reports it.
///
/// Every process starts NOT_SERVING, switches to SERVING once its listener is bound and its dependencies are
/// open, and back to NOT_SERVING as soon as it starts draining on SIGTERM. The empty service name "" is the
/// whole process; each gRPC service registered by the process is reported under its full name too.
public final class HealthStatus: Sendable {
    fileprivate typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private struct State {
        var statuses: [String: ServingStatus]
        var watchers: [Int: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextWatcher = 0
        var closed = false
    }

    private let state: Mutex<State>

    /// A status for the process ("") and each named service, all NOT_SERVING.
    public init(services: [String]) {
        var statuses: [String: ServingStatus] = ["": .notServing]
        for name in services { statuses[name] = .notServing }
        self.state = Mutex(State(statuses: statuses))
    }

    /// Marks the process and every service as serving or not, and tells the watchers. Once
    /// ``shutDown()`` has run, the status stays NOT_SERVING.
    public func setServing(_ serving: Bool) {
        let status: ServingStatus = serving ? .serving : .notServing
        state.withLock { state in
            guard !state.closed else { return }
            for key in state.statuses.keys { state.statuses[key] = status }
            for watcher in state.watchers.values { watcher.continuation.yield(status) }
        }
    }

    /// Reports NOT_SERVING and ends every `Watch` stream, so that long-lived watchers do not hold up a
    /// graceful shutdown. Later watchers get the status and an immediate end.
    public func shutDown() {
        let watchers = state.withLock { state in
            state.closed = true
            for key in state.statuses.keys { state.statuses[key] = .notServing }
            let watchers = state.watchers.values.map(\.continuation)
            state.watchers.removeAll()
            return watchers
        }
        for continuation in watchers {
            continuation.yield(.notServing)
            continuation.finish()
        }
    }

    /// Whether the whole process reports SERVING.
    public var isServing: Bool {
        state.withLock { $0.statuses[""] == .serving }
    }

    fileprivate func status(of service: String) -> ServingStatus? {
        state.withLock { $0.statuses[service] }
    }

    fileprivate func watch(_ service: String) -> (id: Int, stream: AsyncStream<ServingStatus>) {
        let (stream, continuation) = AsyncStream<ServingStatus>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = state.withLock { state in
            let id = state.nextWatcher
            state.nextWatcher += 1
            continuation.yield(state.statuses[service] ?? .serviceUnknown)
            if state.closed {
                continuation.finish()
            } else {
                state.watchers[id] = (service, continuation)
            }
            return id
        }
        return (id, stream)
    }

    fileprivate func unwatch(_ id: Int) {
        let watcher = state.withLock { $0.watchers.removeValue(forKey: id) }
        watcher?.continuation.finish()
    }
}

/// `grpc.health.v1.Health`, served by every Atrium process.
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
    private let status: HealthStatus

    /// A health service reporting `status`.
    public init(status: HealthStatus) {
        self.status = status
    }

    public func check(
        request: Grpc_Health_V1_HealthCheckRequest,
        context: ServerContext
    ) async throws -> Grpc_Health_V1_HealthCheckResponse {
        guard let serving = status.status(of: request.service) else {
            throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
        }
        return .with { $0.status = serving }
    }

    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest,
        response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        let (id, stream) = status.watch(request.service)
        defer { status.unwatch(id) }
        try await withTaskCancellationHandler {
            for await serving in stream {
                try await response.write(.with { $0.status = serving })
            }
        } onCancel: {
            status.unwatch(id)
        }
    }
}
