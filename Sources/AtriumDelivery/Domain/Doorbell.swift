import Foundation
import Synchronization

/// Wakes the streams waiting on a key (a subscriber's inbox, a printer's jobs) when something new is stored
/// for it. A ring carries no data: a woken stream reads what is new from the database, so a ring that
/// arrives while the stream is busy is never lost (each listener buffers one pending ring), and two rings
/// cost one read.
final class Doorbell: Sendable {
    private struct Listener {
        let key: String
        let continuation: AsyncStream<Void>.Continuation
    }

    private let listeners = Mutex<[UInt64: Listener]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// A stream of rings for `key`. Listen before reading the database, so nothing stored in between is missed.
    /// The stream ends when the listening task is cancelled.
    func listen(_ key: String) -> AsyncStream<Void> {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        continuation.onTermination = { [weak self] _ in
            _ = self?.listeners.withLock { $0.removeValue(forKey: id) }
        }
        listeners.withLock { $0[id] = Listener(key: key, continuation: continuation) }
        return stream
    }

    /// Rings every listener of `key`.
    func ring(_ key: String) {
        let targets = listeners.withLock { listeners in listeners.values.filter { $0.key == key }.map(\.continuation) }
        for continuation in targets { continuation.yield() }
    }
}
