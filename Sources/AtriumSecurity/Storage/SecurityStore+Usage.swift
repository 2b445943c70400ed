import AtriumAPI
import AtriumCore
import Foundation
import GRDB
import AtriumRuntime

/// Storage quotas and reservations, metered usage and notifications.
extension SecurityStore {
    /// A subscriber's storage right now.
    struct StorageState: Sendable, Equatable {
        var quotaBytes: Int64
        var usedBytes: Int64
        var reservedBytes: Int64
        var warningPercent: Int64
        var warning: Bool
    }

    /// How long an unsettled reservation holds its bytes.
    static let reservationLifetime: TimeInterval = 3600

    /// Reserves `bytes` for an upload; RESOURCE_EXHAUSTED when used + reserved + bytes would pass the quota.
    /// Idempotent by `reservationID`.
    ///
    /// Reservations are held in memory, not written: they are short-lived holds, and what counts (the bytes
    /// committed) arrives with the settlement, which names its subscriber. A restart forgets holds in
    /// flight, so for that moment concurrent uploads can pass the quota by what they hold.
    func reserve(subscriberID: String, bytes: Int64, reservationID: String, lifetime: TimeInterval = reservationLifetime, now: Date) throws -> StorageState {
        let state = try database.read { db in
            try Self.requireLive(subscriberID, db: db)
            return try Self.storageState(of: subscriberID, reserved: 0, db: db)
        }
        return try reservations.reserve(
            Reservation(id: reservationID, subscriberID: subscriberID, bytes: bytes, expiresAt: now.addingTimeInterval(lifetime)),
            now: now
        ) { held in
            var current = state
            current.reservedBytes = held
            current.warning = Self.warning(current)
            guard Int128(current.usedBytes) + Int128(held) + Int128(bytes) <= Int128(current.quotaBytes) else {
                throw SecurityError.resourceExhausted(
                    "storage quota exceeded: the upload needs \(bytes) bytes, and \(current.usedBytes) bytes of the \(current.quotaBytes)-byte quota are used and \(held) reserved"
                )
            }
            current.reservedBytes += bytes
            current.warning = Self.warning(current)
            return current
        }
    }

    /// One settlement: commit (`committedBytes` become used) or release a reservation, or one draw on a lease.
    struct Settlement: Sendable {
        var reservationID: String
        var commit: Bool
        var committedBytes: Int64
        /// The subscriber, when the caller knows it: a commit then counts even if the reservation is gone.
        var subscriberID: String?
        /// A draw on this lease: `reservationID` names the draw, which takes `drawnBytes` off the lease's hold.
        var leaseID: String? = nil
        var drawnBytes: Int64 = 0
    }

    /// Applies settlements in one transaction, each once: a reservation (or draw) ID settled before is skipped.
    /// Returns the subscribers touched and how many settlements were new. The bytes committed are added to each
    /// subscriber's account once per call, summed: every settlement of one call has the same time.
    func settle(_ settlements: [Settlement], now: Date) throws -> (subscribers: [String], applied: Int) {
        var subscribers: [String] = []
        var draws: [(lease: String, bytes: Int64)] = []
        var applied = 0
        try database.write { db in
            subscribers = []
            draws = []
            applied = 0
            var known: Set<String> = []
            var deltas: [(subscriberID: String, bytes: Int64)] = []
            for settlement in settlements {
                // Settled before: answered the same way, whatever this request says.
                if let done = try StorageReservationRecord.fetchOne(db, key: settlement.reservationID) {
                    subscribers.append(done.subscriberID)
                    continue
                }
                let held = reservations.find(settlement.leaseID ?? settlement.reservationID)
                guard let subscriberID = settlement.leaseID == nil ? held?.subscriberID ?? settlement.subscriberID : settlement.subscriberID,
                    !subscriberID.isEmpty
                else {
                    throw settlement.leaseID == nil
                        ? SecurityError.notFound("no reservation '\(settlement.reservationID)'")
                        : SecurityError.invalidArgument("draw '\(settlement.reservationID)' on a lease names no subscriber")
                }
                if let held, held.subscriberID != subscriberID {
                    throw SecurityError.invalidArgument("reservation '\(held.id)' belongs to another subscriber")
                }
                subscribers.append(subscriberID)
                if settlement.leaseID != nil {
                    if settlement.commit, settlement.committedBytes > settlement.drawnBytes {
                        throw SecurityError.invalidArgument("committed_bytes \(settlement.committedBytes) exceeds the \(settlement.drawnBytes) bytes drawn")
                    }
                } else if let held, settlement.commit, settlement.committedBytes > held.bytes {
                    throw SecurityError.invalidArgument("committed_bytes \(settlement.committedBytes) exceeds the \(held.bytes) bytes reserved")
                }
                if known.insert(subscriberID).inserted {
                    guard try SubscriberRecord.fetchOne(db, key: subscriberID) != nil else { throw Self.unknownSubscriber(subscriberID) }
                }
                try StorageReservationRecord(
                    id: settlement.reservationID,
                    subscriberID: subscriberID,
                    bytes: settlement.commit ? settlement.committedBytes : 0,
                    expiresAt: now,
                    settledAt: now
                ).insert(db)
                if settlement.commit && settlement.committedBytes != 0 {
                    if let index = deltas.firstIndex(where: { $0.subscriberID == subscriberID }) {
                        deltas[index].bytes += settlement.committedBytes
                    } else {
                        deltas.append((subscriberID, settlement.committedBytes))
                    }
                }
                if let lease = settlement.leaseID { draws.append((lease, settlement.drawnBytes)) }
                applied += 1
            }
            for (subscriberID, bytes) in deltas {
                try Self.applyStorageChange(subscriberID: subscriberID, delta: bytes, at: now, db: db)
            }
        }
        // Only once the transaction is durable do the holds go: until then they still count.
        for settlement in settlements where settlement.leaseID == nil { reservations.remove(settlement.reservationID) }
        for draw in draws { reservations.draw(draw.bytes, from: draw.lease) }
        return (subscribers, applied)
    }

    /// One settlement; answered with the subscriber's storage afterwards.
    func settle(_ settlement: Settlement, now: Date) throws -> (subscriberID: String, state: StorageState) {
        let result = try settle([settlement], now: now)
        let id = result.subscribers[0]
        return (id, try storageState(of: id, now: now))
    }

    /// One settlement of a reservation of its own (not a lease).
    func settle(reservationID: String, commit: Bool, committedBytes: Int64, subscriberID: String? = nil, now: Date) throws -> (subscriberID: String, state: StorageState) {
        try settle(Settlement(reservationID: reservationID, commit: commit, committedBytes: committedBytes, subscriberID: subscriberID), now: now)
    }

    /// A subscriber's storage now.
    func storageState(of subscriberID: String, now: Date) throws -> StorageState {
        let held = reservations.held(by: subscriberID, now: now)
        return try database.read { db in try Self.storageState(of: subscriberID, reserved: held, db: db) }
    }

    /// Records events not seen before (by event ID); returns how many were new.
    func record(_ events: [UsageEventRecord], now: Date) throws -> Int {
        try database.write { db in
            var recorded = 0
            for event in events {
                guard try UsageEventRecord.fetchOne(db, key: event.eventID) == nil else { continue }
                guard try SubscriberRecord.fetchOne(db, key: event.subscriberID) != nil else {
                    throw SecurityError.notFound("event '\(event.eventID)' names no known subscriber")
                }
                try event.insert(db)
                if event.storedBytesDelta != 0 {
                    try Self.applyStorageChange(subscriberID: event.subscriberID, delta: event.storedBytesDelta, at: event.time, db: db)
                }
                recorded += 1
            }
            return recorded
        }
    }

    /// A subscriber's storage and its metered usage in `period`, up to `now`.
    func usage(of subscriberID: String, period: BillingPeriod, now: Date) throws -> (StorageState, MeteredUsage) {
        let held = reservations.held(by: subscriberID, now: now)
        return try database.read { db in
            _ = try Self.view(of: subscriberID, db: db)
            return (try Self.storageState(of: subscriberID, reserved: held, db: db), try Self.metered(subscriberID, period: period, now: now, db: db))
        }
    }

    /// A subscriber's notifications, newest first, with their position (SQLite's rowid, which grows with each
    /// insert), before position `before`.
    func notifications(of subscriberID: String, before: Int64?, limit: Int) throws -> [(position: Int64, record: NotificationRecord)] {
        try database.read { db in
            var request = NotificationRecord.select(AllColumns(), Column.rowID).filter(Column("subscriber_id") == subscriberID)
            if let before { request = request.filter(Column.rowID < before) }
            return try Row.fetchAll(db, request.order(Column.rowID.desc).limit(limit)).map { row in
                (row[Column.rowID.name] as Int64, try NotificationRecord(row: row))
            }
        }
    }

    // MARK: - Inside a transaction

    static func storageState(of subscriberID: String, reserved: Int64, db: Database) throws -> StorageState {
        let contract = try latestContract(of: subscriberID, db: db)
        let used = try StorageAccountRecord.fetchOne(db, key: subscriberID)?.usedBytes ?? 0
        let percent = Int64(contract.storageWarningPercent == 0 ? 80 : contract.storageWarningPercent)
        var state = StorageState(
            quotaBytes: Int64(clamping: contract.storageQuotaBytes),
            usedBytes: used,
            reservedBytes: reserved,
            warningPercent: percent,
            warning: false
        )
        state.warning = warning(state)
        return state
    }

    /// Whether used + reserved is at or above the warning threshold.
    static func warning(_ state: StorageState) -> Bool {
        state.quotaBytes > 0 && (Int128(state.usedBytes) + Int128(state.reservedBytes)) * 100 >= Int128(state.quotaBytes) * Int128(state.warningPercent)
    }

    /// Integrates the stored bytes up to `time` (split across calendar months), applies `delta`, and writes one
    /// `storage.warning` notification when used + reserved crosses the contract's warning threshold.
    static func applyStorageChange(subscriberID: String, delta: Int64, at time: Date, db: Database) throws {
        var account =
            try StorageAccountRecord.fetchOne(db, key: subscriberID)
            ?? StorageAccountRecord(subscriberID: subscriberID, usedBytes: 0, lastChangeAt: time, warning: false)
        let end = max(time, account.lastChangeAt)
        for (period, milliseconds) in split(from: account.lastChangeAt, to: end) where account.usedBytes > 0 {
            var row =
                try StoragePeriodRecord.fetchOne(db, key: ["subscriber_id": subscriberID, "period": period.text])
                ?? StoragePeriodRecord(subscriberID: subscriberID, period: period.text, gigaByteMilliseconds: 0, remainderByteMilliseconds: 0)
            row.add(byteMilliseconds: Int128(account.usedBytes) * Int128(milliseconds))
            try row.save(db)
        }
        account.usedBytes = max(0, account.usedBytes + delta)
        account.lastChangeAt = end
        // The notification follows committed bytes only, so that uploads that fail and retry near the threshold
        // do not warn again each time their reservation comes and goes.
        let state = try storageState(of: subscriberID, reserved: 0, db: db)
        let crossing = state.quotaBytes > 0 && Int128(account.usedBytes) * 100 >= Int128(state.quotaBytes) * Int128(state.warningPercent)
        if crossing && !account.warning {
            try NotificationRecord(
                id: Identifier.make(prefix: "ntf"),
                subscriberID: subscriberID,
                kind: "storage.warning",
                message: "storage use has reached \(state.warningPercent)% of the quota: \(account.usedBytes) of \(state.quotaBytes) bytes",
                createdAt: time
            ).insert(db)
        }
        account.warning = crossing
        try account.save(db)
    }

    /// Metered usage of one period; storage includes the time since the last change, up to `now`.
    static func metered(_ subscriberID: String, period: BillingPeriod, now: Date, db: Database) throws -> MeteredUsage {
        var usage = MeteredUsage()
        if let row = try Row.fetchOne(
            db,
            sql: """
                SELECT SUM(deliveries), SUM(delivered_bytes), SUM(processed_images), SUM(processed_bytes), SUM(cpu_milliseconds)
                FROM usage_event WHERE subscriber_id = ? AND period = ?
                """,
            arguments: [subscriberID, period.text]
        ) {
            usage.deliveries = row[0] ?? 0
            usage.deliveredBytes = row[1] ?? 0
            usage.processedImages = row[2] ?? 0
            usage.processedBytes = row[3] ?? 0
            usage.cpuMilliseconds = row[4] ?? 0
        }
        if let row = try StoragePeriodRecord.fetchOne(db, key: ["subscriber_id": subscriberID, "period": period.text]) {
            usage.storageByteMilliseconds = row.byteMilliseconds
        }
        if let account = try StorageAccountRecord.fetchOne(db, key: subscriberID), account.usedBytes > 0 {
            for (segment, milliseconds) in split(from: account.lastChangeAt, to: now) where segment == period {
                usage.storageByteMilliseconds += Int128(account.usedBytes) * Int128(milliseconds)
            }
        }
        return usage
    }

    /// `[start, end)` cut at month boundaries, as (period, whole milliseconds) pieces.
    static func split(from start: Date, to end: Date) -> [(BillingPeriod, Int64)] {
        var pieces: [(BillingPeriod, Int64)] = []
        var cursor = start
        while cursor < end {
            let period = BillingPeriod(containing: cursor)
            let stop = min(end, period.end)
            pieces.append((period, milliseconds(stop) - milliseconds(cursor)))
            cursor = stop
        }
        return pieces
    }

    /// Unix milliseconds, clamped to years 0001 to 9999 (requests are validated to that range before they get here).
    static func milliseconds(_ date: Date) -> Int64 {
        let value = (date.timeIntervalSince1970 * 1000).rounded()
        guard value.isFinite else { return 0 }
        return Int64(min(max(value, -62_135_596_800_000), 253_402_300_799_000))
    }
}
