import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle

/// Delivers the registry's settlement outbox to security: each committed image's reservation is settled
/// with the bytes it added. `send` tries at once; `run` retries what is left every two seconds, including
/// rows left by an earlier process, until security acknowledges them. Settling is idempotent at security,
/// so a retry after a lost reply counts nothing twice.
struct SettlementSender: Service {
    let store: RegistryStore
    let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
    let logger: Logger

    /// Settles one reservation now; on failure the outbox row stays for `run` to retry.
    func send(reservationID: String, committedBytes: Int64) async {
        do {
            _ = try await security.settleReservation(
                .with {
                    $0.reservationID = reservationID
                    $0.commit = true
                    $0.committedBytes = UInt64(committedBytes)
                },
                options: .internalCall
            )
        } catch let error as RPCError where error.code == .notFound {
            logger.error("security does not know a reservation the registry owes; dropping it", metadata: ["reservation": "\(reservationID)"])
        } catch {
            logger.warning("cannot settle a storage reservation yet; will retry", metadata: [LogKey.error: "\(error)", "reservation": "\(reservationID)"])
            return
        }
        do {
            try await store.removeSettlement(reservationID)
        } catch {
            logger.error("cannot clear a settled reservation from the outbox", metadata: [LogKey.error: "\(error)", "reservation": "\(reservationID)"])
        }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let pending = try? await store.pendingSettlements(limit: 100) {
                    for row in pending { await send(reservationID: row.reservationID, committedBytes: row.committedBytes) }
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }
}
