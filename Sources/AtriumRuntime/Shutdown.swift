import GRPCCore
import ServiceLifecycle

/// Runs a stream that never ends on its own (a watch) until it ends or the process begins a graceful shutdown;
/// then the stream ends with UNAVAILABLE naming `who`, so the client reconnects (to this process once it is back,
/// or to another) and the server can drain instead of waiting for the watcher forever.
public func endingAtShutdown<T: Sendable>(_ who: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    do {
        return try await cancelWhenGracefulShutdown(body)
    } catch is CancellationError where Task.isShuttingDownGracefully {
        throw RPCError(code: .unavailable, message: "\(who) is shutting down; watch again")
    }
}
