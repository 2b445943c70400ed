import Dispatch

/// Runs blocking or CPU-heavy work (parsing, transcoding, database snapshots) on a dispatch queue, off the
/// cooperative threads that run Swift tasks and serve requests.
public func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try work() }) }
    }
}

extension Duration {
    /// Whole milliseconds, rounded down: for log lines and retry hints.
    public var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
