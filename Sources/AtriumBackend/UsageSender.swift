import SwiftProtobuf
public import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging

/// Sends the usage outbox to security's `RecordUsage` in batches, then clears what was recorded. Security
/// deduplicates by event ID, so a batch resent after a lost reply counts nothing twice.
public struct UsageSender: Sendable {
    let outbox: UsageOutbox
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    let logger: Logger

    public init(outbox: UsageOutbox, security: any Atrium_V1_SecurityInternal.ClientProtocol, logger: Logger) {
        self.outbox = outbox
        self.security = security
        self.logger = logger
    }

    /// Sends up to 2 000 events; returns whether the outbox may hold more.
    public func deliver() async -> Bool {
        let pending: [(sequence: Int64, event: Atrium_V1_UsageEvent)]
        do {
            pending = try await outbox.pending(limit: 2000)
        } catch {
            logger.error("cannot read the usage outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        guard let last = pending.last?.sequence else { return false }
        do {
            _ = try await security.recordUsage(.with { $0.events = pending.map(\.event) }, options: .internalCall)
        } catch {
            logger.warning("cannot record usage yet; will retry", metadata: [LogKey.error: "\(error)", "pending": "\(pending.count)"])
            return false
        }
        do {
            try await outbox.remove(through: last)
        } catch {
            logger.error("cannot clear recorded usage from the outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        return pending.count == 2000
    }
}
