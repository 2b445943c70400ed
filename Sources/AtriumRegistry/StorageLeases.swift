import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import Logging

/// The storage quota the registry holds for its uploads, as leases from security (the way quota servers and
/// Envoy's rate-limit quota hand out local allowances): one `ReserveStorage` takes `size` bytes of a subscriber's
/// quota, and the uploads that follow draw on it here, without a call. Each draw is settled through the outbox in
/// the image's own transaction (a `SettleReservations` entry naming the lease); what a lease will not use is given
/// back when the next one is taken.
///
/// - Over quota is still refused before anything is stored: when a whole lease no longer fits, the upload asks
///   for exactly its own size, and security refuses that as it refused a per-upload reservation.
/// - A lease is drawn on for at most `window`; then the next upload takes a new one. A lowered quota or a
///   suspension reaches uploads within it.
/// - Security holds a lease for `holdSeconds`. A registry restart loses its leases; their holds keep counting
///   (less allowance, never more) until they are settled or expire.
/// - Security keeps holds in memory: after a security restart, until the registry's next lease, a subscriber can
///   pass its quota by at most the one lease the registry holds for it.
actor StorageLeases {
    /// One upload's share of a lease.
    struct Draw: Sendable {
        /// The draw's ID: the settlement's idempotency key.
        let id: String
        let leaseID: String
        let bytes: UInt64
    }

    private struct Lease {
        let id: String
        let granted: UInt64
        var drawn: UInt64
        let until: ContinuousClock.Instant
    }

    /// How security holds a lease (seconds): long enough for the uploads drawing on it to settle.
    static let holdSeconds: UInt32 = 600

    private let size: UInt64
    private let window: Duration
    private let store: RegistryStore
    private let security: any Atrium_V1_SecurityInternal.ClientProtocol
    private let logger: Logger
    private var leases: [String: Lease] = [:]
    /// A lease being taken, by subscriber: concurrent uploads wait for it rather than each taking one.
    private var taking: [String: Task<Void, any Error>] = [:]

    init(size: UInt64, window: Duration, store: RegistryStore, security: any Atrium_V1_SecurityInternal.ClientProtocol, logger: Logger) {
        self.size = size
        self.window = window
        self.store = store
        self.security = security
        self.logger = logger
    }

    /// Draws `bytes` for an upload of `subscriberID`, taking a new lease when the current one is used up or old.
    /// RESOURCE_EXHAUSTED when the quota cannot hold the upload; PERMISSION_DENIED when the subscriber may not store.
    func draw(_ bytes: UInt64, for subscriberID: String, requestID: String) async throws -> Draw {
        if size == 0 {
            // A reservation per upload, drawn on once.
            return Draw(id: Identifier.make(prefix: "rsv"), leaseID: try await reserve(bytes, minimum: bytes, for: subscriberID, requestID: requestID).id, bytes: bytes)
        }
        while true {
            if var lease = leases[subscriberID], ContinuousClock.now < lease.until, lease.granted - lease.drawn >= bytes {
                lease.drawn += bytes
                leases[subscriberID] = lease
                return Draw(id: Identifier.make(prefix: "rsv"), leaseID: lease.id, bytes: bytes)
            }
            if let pending = taking[subscriberID] {
                // Another upload is taking a lease; whether or not it fits this one, look again once it is done.
                _ = try? await pending.value
                continue
            }
            let task = Task { try await self.take(bytes, for: subscriberID, requestID: requestID) }
            taking[subscriberID] = task
            let result = await task.result
            taking[subscriberID] = nil
            try result.get()
        }
    }

    /// Gives back the bytes of an upload that stored nothing: to its lease while it is current, else to security.
    func giveBack(_ draw: Draw, subscriberID: String, requestID: String) async {
        if size != 0, var lease = leases[subscriberID], lease.id == draw.leaseID {
            lease.drawn -= draw.bytes
            leases[subscriberID] = lease
            return
        }
        await release(draw.bytes, of: draw.leaseID, subscriberID: subscriberID, requestID: requestID)
    }

    /// Retires the leases past their window, giving back what they will not use, so that an idle subscriber's usage
    /// does not show a lease's remainder as reserved for longer than the window (run with the settlement outbox).
    func retireExpired() async {
        let now = ContinuousClock.now
        for (subscriberID, lease) in leases where lease.until <= now && taking[subscriberID] == nil {
            leases[subscriberID] = nil
            if lease.granted > lease.drawn {
                await release(lease.granted - lease.drawn, of: lease.id, subscriberID: subscriberID, requestID: "")
            }
        }
    }

    /// Retires the current lease (giving back what it will not use) and takes one that holds at least `bytes`.
    private func take(_ bytes: UInt64, for subscriberID: String, requestID: String) async throws {
        if let retiring = leases.removeValue(forKey: subscriberID), retiring.granted > retiring.drawn {
            await release(retiring.granted - retiring.drawn, of: retiring.id, subscriberID: subscriberID, requestID: requestID)
        }
        let (id, granted) = try await reserve(max(size, bytes), minimum: bytes, for: subscriberID, requestID: requestID)
        leases[subscriberID] = Lease(id: id, granted: granted, drawn: 0, until: .now + window)
    }

    /// Reserves `amount` bytes at security, or only `minimum` when `amount` does not fit; returns the reservation's
    /// ID and the bytes it holds.
    private func reserve(_ amount: UInt64, minimum: UInt64, for subscriberID: String, requestID: String) async throws -> (id: String, bytes: UInt64) {
        var amount = amount
        while true {
            let id = Identifier.make(prefix: "lse")
            do {
                _ = try await security.reserveStorage(
                    .with {
                        $0.subscriberID = subscriberID
                        $0.bytes = amount
                        $0.reservationID = id
                        $0.holdSeconds = Self.holdSeconds
                    },
                    options: .internalCall
                )
                return (id, amount)
            } catch let error as RPCError where error.code == .resourceExhausted && amount > minimum {
                // A whole lease does not fit: the upload may still, on its own.
                amount = minimum
            } catch let error as RPCError where error.code == .resourceExhausted || error.code == .failedPrecondition {
                throw RPCError(code: error.code == .resourceExhausted ? .resourceExhausted : .permissionDenied, message: error.message)
            } catch {
                logger.error("cannot reserve storage", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
                throw RegistryError.quotaUnavailable()
            }
        }
    }

    /// Gives `bytes` of a lease back to security: at once when it answers, else through the outbox.
    private func release(_ bytes: UInt64, of leaseID: String, subscriberID: String, requestID: String) async {
        let row = SettlementRow(
            reservationID: Identifier.make(prefix: "rls"),
            subscriberID: subscriberID,
            committedBytes: 0,
            createdAt: Date(),
            leaseID: leaseID,
            drawnBytes: Int64(bytes),
            commits: false
        )
        do {
            _ = try await security.settleReservation(row.request, options: .internalCall)
            return
        } catch {
            logger.warning(
                "cannot release lease bytes now; queued",
                metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)", "lease": "\(leaseID)"]
            )
        }
        do {
            try await store.enqueue(row)
        } catch {
            // Not lost for good: the hold expires on its own (holdSeconds), which only ever counts against the quota.
            logger.error("cannot queue a lease release; it expires on its own", metadata: [LogKey.error: "\(error)", "lease": "\(leaseID)"])
        }
    }
}
