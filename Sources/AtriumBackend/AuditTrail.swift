import SwiftProtobuf
public import AtriumAPI
import AtriumCore
public import GRPCCore
public import AtriumRuntime
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
import Synchronization
public import Foundation

/// Collects records in memory and sends them in batches, off the request path: `interval` after the first record
/// of a batch arrives (an empty queue waits without waking), and once more at graceful shutdown. When sending fails
/// the records stay queued and are retried; past `capacity` the
/// oldest are dropped, and the drop is logged as an error with its count.
public final class BatchingQueue<Element: Sendable>: Service, Sendable {
    private let pending = Mutex<[Element]>([])
    private let dropped = Mutex<Int>(0)
    private let capacity: Int
    private let batchSize: Int
    private let interval: Duration
    private let name: String
    private let logger: Logger
    private let send: @Sendable ([Element]) async throws -> Void
    /// Rung by ``enqueue(_:)``.
    private let arrived = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    /// - Parameters:
    ///   - name: what is queued, for the log (e.g. "audit entries").
    ///   - send: delivers one batch; throwing keeps the batch queued.
    public init(
        name: String,
        capacity: Int = 100_000,
        batchSize: Int = 2_000,
        interval: Duration = .milliseconds(100),
        logger: Logger,
        send: @escaping @Sendable ([Element]) async throws -> Void
    ) {
        self.name = name
        self.capacity = capacity
        self.batchSize = batchSize
        self.interval = interval
        self.logger = logger
        self.send = send
    }

    /// Queues one record; never blocks.
    public func enqueue(_ element: Element) {
        let overflow = pending.withLock { pending -> Bool in
            pending.append(element)
            guard pending.count > capacity else { return false }
            pending.removeFirst(pending.count - capacity)
            return true
        }
        if overflow { dropped.withLock { $0 += 1 } }
        arrived.continuation.yield()
    }

    /// How many records wait to be sent.
    public var count: Int { pending.withLock { $0.count } }

    /// Sends everything queued now; returns whether the queue was emptied.
    @discardableResult
    public func flush() async -> Bool {
        while true {
            let batch = pending.withLock { pending -> [Element] in
                let batch = Array(pending.prefix(batchSize))
                pending.removeFirst(batch.count)
                return batch
            }
            guard !batch.isEmpty else { return true }
            do {
                try await send(batch)
            } catch {
                pending.withLock { $0.insert(contentsOf: batch, at: 0) }
                logger.warning("cannot send \(name); will retry", metadata: [LogKey.error: "\(error)", "queued": "\(count)"])
                return false
            }
        }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            var arrivals = self.arrived.stream.makeAsyncIterator()
            while !Task.isCancelled {
                // Idle until a record arrives; records left by a failed send are retried after `interval`.
                if self.count == 0 {
                    guard await arrivals.next() != nil else { break }
                }
                try? await Task.sleep(for: self.interval)
                await self.flush()
                let lost = self.dropped.withLock { value in defer { value = 0 }; return value }
                if lost > 0 {
                    self.logger.error("dropped \(self.name): the queue was full", metadata: ["count": "\(lost)"])
                }
            }
        }
        await flush()
    }
}

/// Sends audit entries to security's `AppendAudit`, batched. Services record accesses to patient data here;
/// the gateway records every call's authorization and outcome.
public typealias AuditTrail = BatchingQueue<Atrium_V1_AuditEntry>

extension BatchingQueue where Element == Atrium_V1_AuditEntry {
    /// A trail that sends through `security`.
    public convenience init(security client: any Atrium_V1_SecurityInternal.ClientProtocol, logger: Logger) {
        self.init(name: "audit entries", logger: logger) { entries in
            _ = try await client.appendAudit(.with { $0.entries = entries })
        }
    }

    /// Records one call's access to `resource` for `caller` (see `Atrium_V1_AuditEntry.init(_:caller:...)`).
    public func record(
        _ method: MethodDescriptor,
        caller: VerifiedCaller,
        resource: String = "",
        owner: String = "",
        patientID: String = "",
        outcome: String = "ok",
        at time: Date
    ) {
        enqueue(Atrium_V1_AuditEntry(method, caller: caller, resource: resource, owner: owner, patientID: patientID, outcome: outcome, at: time))
    }
}
