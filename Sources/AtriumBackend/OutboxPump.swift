public import ServiceLifecycle

/// Drains a durable outbox to another service: runs `deliver` when woken, and every `interval` in any case (so
/// rows left by a failed attempt, or by an earlier process, are retried), until it reports nothing more to
/// send. A wake waits `batchDelay` first, so that rows written close together go in one batch. At graceful
/// shutdown it runs once more, then stops.
public struct OutboxPump: Service {
    private let interval: Duration
    private let batchDelay: Duration
    /// Sends one batch; returns whether more may be waiting (then it is called again at once).
    private let deliver: @Sendable () async -> Bool
    private let signal = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    public init(interval: Duration, batchDelay: Duration = .zero, deliver: @escaping @Sendable () async -> Bool) {
        self.interval = interval
        self.batchDelay = batchDelay
        self.deliver = deliver
    }

    /// Asks for the outbox to be drained now.
    public func wake() {
        signal.continuation.yield()
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    signal.continuation.yield()
                }
            }
            group.addTask {
                try? await gracefulShutdown()
                signal.continuation.finish()
            }
            for await _ in signal.stream {
                if batchDelay > .zero { try? await Task.sleep(for: batchDelay) }
                while await deliver() {}
            }
            _ = await deliver()
            group.cancelAll()
        }
    }
}
