import Dispatch
public import GRDB
import Synchronization

/// Group commit: writes submitted while a transaction is committing are gathered into the next one, so that
/// concurrent uploads share one fsync of the write-ahead log instead of queueing for one each.
///
/// Each submitted write runs in its own savepoint: one that throws is rolled back alone and its caller gets the
/// error, while the others commit. A caller resumes only once the transaction holding its write is durable
/// (`synchronous = FULL`); if that commit fails, every write in it fails.
public final class GroupCommit<Output: Sendable>: Sendable {
    public typealias Work = @Sendable (Database) throws -> Output

    private struct Pending {
        var work: Work
        var continuation: CheckedContinuation<Output, any Error>
    }

    private struct State {
        var pending: [Pending] = []
        var flushing = false
    }

    private let database: DatabasePool
    private let queue: DispatchQueue
    private let state = Mutex(State())
    /// The most writes one transaction takes.
    private let limit: Int

    public init(database: DatabasePool, label: String, limit: Int = 64) {
        self.database = database
        self.queue = DispatchQueue(label: label, qos: .userInitiated)
        self.limit = limit
    }

    /// Runs `work` in the next transaction; returns its output once that transaction is durable.
    public func submit(_ work: @escaping Work) async throws -> Output {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state in
                state.pending.append(Pending(work: work, continuation: continuation))
                defer { state.flushing = true }
                return !state.flushing
            }
            if start { queue.async { self.flush() } }
        }
    }

    /// Commits batches until nothing is pending.
    private func flush() {
        while true {
            let batch: [Pending] = state.withLock { state in
                let batch = Array(state.pending.prefix(limit))
                state.pending.removeFirst(batch.count)
                if batch.isEmpty { state.flushing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            var results: [Result<Output, any Error>] = []
            do {
                try database.write { db in
                    results = []
                    for item in batch {
                        var output: Result<Output, any Error> = .failure(CancellationError())
                        do {
                            try db.inSavepoint {
                                output = .success(try item.work(db))
                                return .commit
                            }
                        } catch {
                            output = .failure(error)
                        }
                        results.append(output)
                    }
                }
            } catch {
                for item in batch { item.continuation.resume(throwing: error) }
                continue
            }
            for (item, result) in zip(batch, results) { item.continuation.resume(with: result) }
        }
    }
}
