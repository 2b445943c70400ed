import AtriumAPI
import AtriumCore
import Foundation
import GRDB

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
    func reserve(subscriberID: String, bytes: Int64, reservationID: String, now: Date) throws -> StorageState {
        try database.write { db in
            try Self.requireLive(subscriberID, db: db)
            if let existing = try StorageReservationRecord.fetchOne(db, key: reservationID) {
                guard existing.subscriberID == subscriberID, existing.bytes == bytes else {
                    throw SecurityError.alreadyExists("reservation '\(reservationID)' exists with other terms")
                }
                return try Self.storageState(of: subscriberID, now: now, db: db)
            }
            let state = try Self.storageState(of: subscriberID, now: now, db: db)
            let wanted = Int128(state.usedBytes) + Int128(state.reservedBytes) + Int128(bytes)
            guard wanted <= Int128(state.quotaBytes) else {
                throw SecurityError.resourceExhausted(
                    "storage quota exceeded: the upload needs \(bytes) bytes, and \(state.usedBytes) bytes of the \(state.quotaBytes)-byte quota are used and \(state.reservedBytes) reserved"
                )
            }
            try StorageReservationRecord(
                id: reservationID,
                subscriberID: subscriberID,
                bytes: bytes,
                expiresAt: now.addingTimeInterval(Self.reservationLifetime),
                settledAt: nil
            ).insert(db)
            try Self.applyStorageChange(subscriberID: subscriberID, delta: 0, at: now, now: now, db: db)
            return try Self.storageState(of: subscriberID, now: now, db: db)
        }
    }

    /// Commits (`committedBytes` become used) or releases a reservation. Settling twice is answered like the first time.
    func settle(reservationID: String, commit: Bool, committedBytes: Int64, now: Date) throws -> (subscriberID: String, state: StorageState) {
        try database.write { db in
            guard var reservation = try StorageReservationRecord.fetchOne(db, key: reservationID) else {
                throw SecurityError.notFound("no reservation '\(reservationID)'")
            }
            if reservation.settledAt == nil {
                guard !commit || committedBytes <= reservation.bytes else {
                    throw SecurityError.invalidArgument("committed_bytes \(committedBytes) exceeds the \(reservation.bytes) bytes reserved")
                }
                reservation.settledAt = now
                try reservation.update(db)
                try Self.applyStorageChange(subscriberID: reservation.subscriberID, delta: commit ? committedBytes : 0, at: now, now: now, db: db)
            }
            return (reservation.subscriberID, try Self.storageState(of: reservation.subscriberID, now: now, db: db))
        }
    }

    /// One metered event as the store takes it.
    struct UsageInput: Sendable {
        var eventID: String
        var subscriberID: String
        var time: Date
        var storedBytesDelta: Int64 = 0
        var deliveries: Int64 = 0
        var deliveredBytes: Int64 = 0
        var processedImages: Int64 = 0
        var processedBytes: Int64 = 0
        var cpuMilliseconds: Int64 = 0
    }

    /// Records events not seen before (by event ID); returns how many were new.
    func record(_ events: [UsageInput], now: Date) throws -> Int {
        try database.write { db in
            var recorded = 0
            for event in events {
                guard try UsageEventRecord.fetchOne(db, key: event.eventID) == nil else { continue }
                guard try SubscriberRecord.fetchOne(db, key: event.subscriberID) != nil else {
                    throw SecurityError.notFound("event '\(event.eventID)' names no known subscriber")
                }
                try UsageEventRecord(
                    eventID: event.eventID,
                    subscriberID: event.subscriberID,
                    period: BillingPeriod(containing: event.time).text,
                    time: event.time,
                    storedBytesDelta: event.storedBytesDelta,
                    deliveries: event.deliveries,
                    deliveredBytes: event.deliveredBytes,
                    processedImages: event.processedImages,
                    processedBytes: event.processedBytes,
                    cpuMilliseconds: event.cpuMilliseconds
                ).insert(db)
                if event.storedBytesDelta != 0 {
                    try Self.applyStorageChange(subscriberID: event.subscriberID, delta: event.storedBytesDelta, at: event.time, now: now, db: db)
                }
                recorded += 1
            }
            return recorded
        }
    }

    /// A subscriber's storage and its metered usage in `period`, up to `now`.
    func usage(of subscriberID: String, period: BillingPeriod, now: Date) throws -> (StorageState, MeteredUsage) {
        try database.read { db in
            _ = try Self.view(of: subscriberID, db: db)
            return (try Self.storageState(of: subscriberID, now: now, db: db), try Self.metered(subscriberID, period: period, now: now, db: db))
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

    static func storageState(of subscriberID: String, now: Date, db: Database) throws -> StorageState {
        let contract = try latestContract(of: subscriberID, db: db)
        let used = try StorageAccountRecord.fetchOne(db, key: subscriberID)?.usedBytes ?? 0
        let reserved =
            try Int64.fetchOne(
                db,
                sql: "SELECT COALESCE(SUM(bytes), 0) FROM storage_reservation WHERE subscriber_id = ? AND settled_at IS NULL AND expires_at > ?",
                arguments: [subscriberID, now]
            ) ?? 0
        let percent = Int64(contract.storageWarningPercent == 0 ? 80 : contract.storageWarningPercent)
        let quota = Int64(clamping: contract.storageQuotaBytes)
        let warning = quota > 0 && (Int128(used) + Int128(reserved)) * 100 >= Int128(quota) * Int128(percent)
        return StorageState(quotaBytes: quota, usedBytes: used, reservedBytes: reserved, warningPercent: percent, warning: warning)
    }

    /// Integrates the stored bytes up to `time` (split across calendar months), applies `delta`, and writes one
    /// `storage.warning` notification when used + reserved crosses the contract's warning threshold.
    static func applyStorageChange(subscriberID: String, delta: Int64, at time: Date, now: Date, db: Database) throws {
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
        let state = try storageState(of: subscriberID, now: now, db: db)
        let crossing = state.quotaBytes > 0 && Int128(account.usedBytes) * 100 >= Int128(state.quotaBytes) * Int128(state.warningPercent)
        if crossing && !account.warning {
            try NotificationRecord(
                id: Identifier.make(prefix: "ntf"),
                subscriberID: subscriberID,
                kind: "storage.warning",
                message: "storage use has reached \(state.warningPercent)% of the quota: \(account.usedBytes) of \(state.quotaBytes) bytes",
                createdAt: now
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
