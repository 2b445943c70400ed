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
    let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
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
                .with {
                    $0.settlements = pending.map { row in
                        .with {
                            $0.reservationID = row.reservationID
                            $0.subscriberID = row.subscriberID
                            $0.commit = true
                            $0.committedBytes = UInt64(row.committedBytes)
                        }
                    }
                },
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

/// Delivers the registry's notice outbox (share notices) to receivers' inboxes through `DeliveryInternal.Deliver`,
/// oldest first. Delivery deduplicates by entry key, so a notice resent after a lost reply arrives once. A
/// recipient delivery does not know (NOT_FOUND) is dropped with an error in the log; other failures are retried.
struct NoticeSender: Sendable {
    let store: RegistryStore
    let delivery: Atrium_V1_DeliveryInternal.Client<HTTP2ClientTransport.Posix>
    let logger: Logger

    /// Delivers up to 100 pending notices; returns whether the outbox may hold more.
    func deliver() async -> Bool {
        let pending: [Notice]
        do {
            pending = try await store.pendingNotices(limit: 100)
        } catch {
            logger.error("cannot read the notice outbox", metadata: [LogKey.error: "\(error)"])
            return false
        }
        for notice in pending {
            do {
                _ = try await delivery.deliver(
                    .with {
                        $0.recipientIds = [notice.recipientID]
                        $0.entryKey = notice.entryKey
                        $0.entry = (try? Atrium_V1_InboxEntry(serializedBytes: notice.entry)) ?? .init()
                    },
                    options: .internalCall
                )
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                logger.error("a share notice cannot be delivered; dropped", metadata: [LogKey.error: "\(error)", "recipient": "\(notice.recipientID)"])
            } catch {
                logger.warning("cannot deliver share notices yet; will retry", metadata: [LogKey.error: "\(error)", "pending": "\(pending.count)"])
                return false
            }
            do {
                try await store.removeNotice(notice.sequence)
            } catch {
                logger.error("cannot clear a delivered notice from the outbox", metadata: [LogKey.error: "\(error)"])
                return false
            }
        }
        return pending.count == 100
    }
}
