import Synchronization

/// Runs one piece of work per key at a time: callers that ask for a key already being worked on wait for
/// that work's result instead of repeating it (a popular image is transcoded once, not once per receiver).
final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    /// The callers waiting on each key in flight. A waiter resumed with `nil` arrived as the run ended.
    private let waiting = Mutex<[Key: [CheckedContinuation<Value?, any Error>]]>([:])

    /// The result of `work` for `key`: this caller's own run, or the run in flight when it asked.
    ///
    /// A caller that arrives just as a run ends runs `work` itself, so `work` should first look for a stored
    /// result (it then finds the one just stored).
    func run(_ key: Key, _ work: () async throws -> Value) async throws -> Value {
        while true {
            let leads = waiting.withLock { waiting in
                guard waiting[key] == nil else { return false }
                waiting[key] = []
                return true
            }
            if leads { break }
            let joined = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value?, any Error>) in
                let registered = waiting.withLock { waiting in
                    guard waiting[key] != nil else { return false }
                    waiting[key]!.append(continuation)
                    return true
                }
                if !registered { continuation.resume(returning: nil) }
            }
            if let joined { return joined }
        }
        let result: Result<Value, any Error>
        do {
            result = .success(try await work())
        } catch {
            result = .failure(error)
        }
        let followers = waiting.withLock { $0.removeValue(forKey: key) ?? [] }
        for follower in followers { follower.resume(with: result.map { Optional($0) }) }
        return try result.get()
    }
}
