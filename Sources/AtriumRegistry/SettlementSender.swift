import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging

/// Delivers the registry's settlement outbox to security, in batches: each committed image's reservation is
/// settled with the bytes it added. An upload does not wait for it: its settlement is durable in the outbox
/// from the moment its record commits, and its reservation keeps counting against the quota until security
/// has applied it. `wake` asks for a delivery now; otherwise the outbox is tried every two seconds, including
/// rows left by an earlier process. Settling is idempotent at security, so a retry after a lost reply counts
/// nothing twice.
struct SettlementSender: Sendable {
    let store: RegistryStore
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    let logger: Logger

    /// Delivers up to 1 000 pending settlements; returns whether the outbox may hold more.
    func deliver() async -> Bool {
        let pending: [SettlementRow]
        do {
            pending = try await store.pendingSettlements(limit: 1000)
        } catch {
            logger.error("cannot read the settlement outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        guard !pending.isEmpty else { return false }
        do {
            _ = try await security.settleReservations(
                .with { $0.settlements = pending.map(\.request) },
                options: .internalCall
            )
        } catch {
            logger.warning("cannot settle storage reservations yet; will retry", metadata: [LogKey.error: "\(error)", "pending": "\(pending.count)"])
            return false
        }
        do {
            try await store.removeSettlements(pending.map(\.reservationID))
        } catch {
            logger.error("cannot clear settled reservations from the outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        return pending.count == 1000
    }
}
