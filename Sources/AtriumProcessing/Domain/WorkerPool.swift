import Foundation
import GRPCCore
import Synchronization
import AtriumRuntime

/// The instance's workers: at most `size` runs compute at once; the others wait in arrival order, up to
/// `queueLimit` of them.
final class WorkerPool: Sendable {
    let size: Int
    let queueLimit: Int
    private struct State {
        var busy = 0
        var nextTicket = 0
        var waiting: [(ticket: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    }
    private let state = Mutex(State())

    init(size: Int, queueLimit: Int) {
        self.size = size
        self.queueLimit = queueLimit
    }

    /// Runs being computed now.
    var busy: Int { state.withLock { $0.busy } }
    /// Runs waiting for a worker.
    var waiting: Int { state.withLock { $0.waiting.count } }

    /// Waits for a free worker. RESOURCE_EXHAUSTED when `queueLimit` runs already wait; CancellationError when the
    /// task is cancelled while waiting.
    func acquire() async throws {
        let ticket: Int? = try state.withLock { state in
            if state.busy < size {
                state.busy += 1
                return nil
            }
            guard state.waiting.count < queueLimit else {
                throw ProcessingError.resourceExhausted("this processing instance's queue is full (\(queueLimit) waiting); try again later")
            }
            state.nextTicket += 1
            return state.nextTicket
        }
        guard let ticket else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let cancelled = state.withLock { state in
                    if Task.isCancelled { return true }
                    state.waiting.append((ticket, continuation))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let index = state.waiting.firstIndex(where: { $0.ticket == ticket }) else { return nil }
                return state.waiting.remove(at: index).continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Frees a worker: the longest waiter gets it.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if state.waiting.isEmpty {
                state.busy -= 1
                return nil
            }
            return state.waiting.removeFirst().continuation
        }
        next?.resume()
    }

    /// Runs `body` on a worker.
    func withWorker<T>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        defer { release() }
        return try await body()
    }
}

/// Megapixels processed recently, for load reports and ETAs.
final class ThroughputMeter: Sendable {
    private let samples = Mutex<[(time: ContinuousClock.Instant, megapixels: Double, seconds: Double)]>([])
    private let window = Duration.seconds(60)

    /// Records `megapixels` processed in `seconds` of one worker's time.
    func record(megapixels: Double, seconds: Double) {
        let now = ContinuousClock.now
        samples.withLock { samples in
            samples.append((now, megapixels, seconds))
            samples.removeAll { now - $0.time > window }
        }
    }

    /// Input megapixels per second over the last minute.
    var megapixelsPerSecond: Double {
        let now = ContinuousClock.now
        return samples.withLock { samples in
            samples.filter { now - $0.time <= window }.reduce(0) { $0 + $1.megapixels } / 60
        }
    }

    /// Megapixels one worker processes per second of its time, lately; `nil` before any work.
    var perWorker: Double? {
        let now = ContinuousClock.now
        return samples.withLock { samples in
            let recent = samples.filter { now - $0.time <= window }
            let seconds = recent.reduce(0) { $0 + $1.seconds }
            return seconds > 0 ? recent.reduce(0) { $0 + $1.megapixels } / seconds : nil
        }
    }
}

/// CPU time of the calling thread, in seconds.
func threadCPUSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
