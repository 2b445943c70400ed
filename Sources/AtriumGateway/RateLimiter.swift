import AtriumAPI
import Synchronization

/// A contract's rate limits as the gateway enforces them.
struct RateLimits: Sendable, Hashable {
    /// Sustained requests per second and the burst above it; a rate of 0 means unlimited.
    var requestsPerSecond: Double
    var requestBurst: Double
    /// Sustained bytes per second (both directions together) and the burst; 0 means unlimited.
    var bytesPerSecond: Double
    var byteBurst: Double

    /// No limits.
    static let unlimited = RateLimits(requestsPerSecond: 0, requestBurst: 0, bytesPerSecond: 0, byteBurst: 0)

    /// The limits of a contract. A burst left at 0 defaults to one second's worth (at least one request).
    init(_ contract: Atrium_V1_Contract) {
        self.requestsPerSecond = contract.requestsPerSecond
        self.requestBurst = contract.requestBurst > 0 ? Double(contract.requestBurst) : max(1, contract.requestsPerSecond.rounded(.up))
        self.bytesPerSecond = Double(contract.bytesPerSecond)
        self.byteBurst = contract.byteBurst > 0 ? Double(contract.byteBurst) : Double(contract.bytesPerSecond)
    }

    init(requestsPerSecond: Double, requestBurst: Double, bytesPerSecond: Double, byteBurst: Double) {
        self.requestsPerSecond = requestsPerSecond
        self.requestBurst = requestBurst
        self.bytesPerSecond = bytesPerSecond
        self.byteBurst = byteBurst
    }
}

/// Token buckets per subscriber, over requests and over bytes streamed.
///
/// A request takes one token or is refused. Bytes are counted per message, in both directions: a message
/// takes its size in tokens and may leave the bucket in debt, and the stream then waits until the debt is
/// repaid, so a long stream runs at the contracted byte rate, whatever the size of its messages. A message
/// that arrives while the subscriber's debt already needs more than `maximumWait` to repay (several streams
/// at once) is refused instead, so that no call queues behind a limit indefinitely.
///
/// Buckets idle for a minute are dropped once there are more than 10 000, so that callers keyed by address
/// (enrolment) cannot grow the table without bound.
final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant

        mutating func refill(rate: Double, capacity: Double, now: ContinuousClock.Instant) {
            tokens = min(capacity, tokens + updated.duration(to: now).seconds * rate)
            updated = now
        }
    }

    private struct State {
        var limits: RateLimits
        var requests: Bucket
        var bytes: Bucket
    }

    private let states = Mutex<[String: State]>([:])
    private let maximumWait: Duration

    init(maximumWait: Duration = .seconds(2)) {
        self.maximumWait = maximumWait
    }

    /// Takes one request token at `now`. Returns `nil` when admitted, or how long until a token is available.
    func admit(_ key: String, limits: RateLimits, now: ContinuousClock.Instant = .now) -> Duration? {
        guard limits.requestsPerSecond > 0 else { return nil }
        return states.withLock { states in
            Self.evictIdle(&states, now: now)
            var state = Self.state(states[key], limits: limits, now: now)
            state.requests.refill(rate: limits.requestsPerSecond, capacity: limits.requestBurst, now: now)
            defer { states[key] = state }
            guard state.requests.tokens >= 1 else {
                return .seconds((1 - state.requests.tokens) / limits.requestsPerSecond)
            }
            state.requests.tokens -= 1
            return nil
        }
    }

    /// Takes `count` byte tokens at `now`. Returns how long the caller must wait before going on (zero when the
    /// bucket covered it), or `nil` when that wait would exceed the maximum, in which case nothing is taken.
    func take(bytes count: Int, _ key: String, limits: RateLimits, now: ContinuousClock.Instant = .now) -> Duration? {
        guard limits.bytesPerSecond > 0 else { return .zero }
        return states.withLock { states in
            var state = Self.state(states[key], limits: limits, now: now)
            state.bytes.refill(rate: limits.bytesPerSecond, capacity: limits.byteBurst, now: now)
            defer { states[key] = state }
            guard state.bytes.tokens >= -limits.bytesPerSecond * maximumWait.seconds else { return nil }
            state.bytes.tokens -= Double(count)
            return state.bytes.tokens >= 0 ? .zero : .seconds(-state.bytes.tokens / limits.bytesPerSecond)
        }
    }

    /// Whether `key` has a request token, without taking it.
    func hasToken(_ key: String, limits: RateLimits) -> Bool {
        let now = ContinuousClock.now
        return states.withLock { states in
            var state = Self.state(states[key], limits: limits, now: now)
            state.requests.refill(rate: limits.requestsPerSecond, capacity: limits.requestBurst, now: now)
            states[key] = state
            return state.requests.tokens >= 1
        }
    }

    private static func evictIdle(_ states: inout [String: State], now: ContinuousClock.Instant) {
        guard states.count > 10_000 else { return }
        states = states.filter { $0.value.requests.updated.duration(to: now) < .seconds(60) || $0.value.bytes.updated.duration(to: now) < .seconds(60) }
    }

    private static func state(_ existing: State?, limits: RateLimits, now: ContinuousClock.Instant) -> State {
        guard var state = existing else {
            return State(
                limits: limits,
                requests: Bucket(tokens: limits.requestBurst, updated: now),
                bytes: Bucket(tokens: limits.byteBurst, updated: now)
            )
        }
        if state.limits != limits {
            // A new contract version: keep what was consumed, within the new capacity.
            state.limits = limits
            state.requests.tokens = min(state.requests.tokens, limits.requestBurst)
            state.bytes.tokens = min(state.bytes.tokens, limits.byteBurst)
        }
        return state
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
