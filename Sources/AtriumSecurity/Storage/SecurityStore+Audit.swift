import AtriumAPI
import AtriumCore
import Foundation
import GRDB
import SwiftProtobuf

/// The append-only, hash-chained audit log.
extension SecurityStore {
    /// An entry to append; the store gives it its sequence and hash.
    struct AuditInput: Sendable {
        var time: Date
        var subscriberID: String
        var method: String
        var resourceID: String = ""
        var resourceOwnerID: String = ""
        var patientID: String = ""
        var outcome: String
        var requestID: String
    }

    /// What to select from the log.
    struct AuditFilter: Sendable {
        var subscriberID: String?
        var resourceID: String?
        var patientID: String?
        /// A method's fully qualified name (`atrium.v1.Registry/Register`); entries written before that was the one
        /// format, as `/atrium.v1.Processing/Run`, match it too.
        var method: String?
        /// The gateway's request ID: the gateway's entry for a call and the services' entries for what it touched.
        var requestID: String?
        /// Accesses to data owned by this subscriber or about these patients (`ListAccesses`).
        var ownedBy: (subscriberID: String, patientIDs: [String])?
        var from: Date?
        var until: Date?
    }

    /// The outcome of walking the chain.
    struct AuditVerification: Sendable, Equatable {
        var checked: Int64
        /// The first entry whose hash does not follow from its predecessor, or that is missing.
        var firstBroken: Int64?
        var detail: String
    }

    /// Appends entries in order, in one transaction; returns the last sequence.
    @discardableResult
    func appendAudit(_ entries: [AuditInput]) throws -> Int64 {
        try database.write { db in try Self.appendAudit(entries, db: db) }
    }

    static func appendAudit(_ entries: [AuditInput], db: Database) throws -> Int64 {
        let last = try AuditRecord.order(Column("sequence").desc).fetchOne(db)
        var sequence = last?.sequence ?? 0
        var previous = last.flatMap { AuditChain.bytes(ofHex: $0.hash) } ?? AuditChain.genesis
        for entry in entries {
            sequence += 1
            var record = AuditRecord(
                sequence: sequence,
                timeMilliseconds: milliseconds(entry.time),
                subscriberID: entry.subscriberID,
                method: entry.method,
                resourceID: entry.resourceID,
                resourceOwnerID: entry.resourceOwnerID,
                patientID: entry.patientID,
                outcome: entry.outcome,
                requestID: entry.requestID,
                hash: ""
            )
            previous = AuditChain.hash(record, previous: previous)
            record.hash = Hex.encode(previous)
            try record.insert(db)
        }
        return sequence
    }

    /// Entries matching `filter` in sequence order, after the sequence `after`.
    func audit(_ filter: AuditFilter, after: Int64, limit: Int) throws -> [AuditRecord] {
        try database.read { db in
            var request = AuditRecord.filter(Column("sequence") > after)
            if let value = filter.subscriberID { request = request.filter(Column("subscriber_id") == value) }
            if let value = filter.resourceID { request = request.filter(Column("resource_id") == value) }
            if let value = filter.patientID { request = request.filter(Column("patient_id") == value) }
            if let query = filter.method {
                // Entries store `atrium.v1.Registry/Register`; processing wrote `/atrium.v1.Processing/Run` before.
                let value = query.hasPrefix("/") ? String(query.dropFirst()) : query
                request = request.filter([value, "/" + value].contains(Column("method")))
            }
            if let value = filter.requestID { request = request.filter(Column("request_id") == value) }
            if let from = filter.from { request = request.filter(Column("time_ms") >= Self.milliseconds(from)) }
            if let until = filter.until { request = request.filter(Column("time_ms") < Self.milliseconds(until)) }
            if let owner = filter.ownedBy {
                var condition = Column("resource_owner_id") == owner.subscriberID
                if !owner.patientIDs.isEmpty {
                    condition = condition || owner.patientIDs.contains(Column("patient_id"))
                }
                request = request.filter(condition)
            }
            return try request.order(Column("sequence")).limit(limit).fetchAll(db)
        }
    }

    /// Walks the whole chain, recomputing every hash.
    func verifyAudit() throws -> AuditVerification {
        try database.read { db in
            var previous = AuditChain.genesis
            var expected: Int64 = 1
            let cursor = try AuditRecord.order(Column("sequence")).fetchCursor(db)
            while let record = try cursor.next() {
                guard record.sequence == expected else {
                    return AuditVerification(checked: expected - 1, firstBroken: expected, detail: "entry \(expected) is missing")
                }
                let hash = AuditChain.hash(record, previous: previous)
                guard Hex.encode(hash) == record.hash, let stored = AuditChain.bytes(ofHex: record.hash) else {
                    return AuditVerification(
                        checked: expected,
                        firstBroken: expected,
                        detail: "entry \(expected)'s hash does not follow from its contents and entry \(expected - 1)"
                    )
                }
                previous = stored
                expected += 1
            }
            // The head is what an operator records elsewhere: removing the newest entries is visible only against it.
            return AuditVerification(
                checked: expected - 1,
                firstBroken: nil,
                detail: "all \(expected - 1) entries follow the chain; head \(expected - 1) is \(Hex.encode(previous))"
            )
        }
    }
}

extension SecurityStore.AuditInput {
    /// An entry as a service built it (`Atrium_V1_AuditEntry.init(_:caller:...)`); an entry without a time gets now.
    init(_ entry: Atrium_V1_AuditEntry) {
        self.init(
            time: entry.hasTime ? entry.time.date : Date(),
            subscriberID: entry.subscriberID,
            method: entry.method,
            resourceID: entry.resourceID,
            resourceOwnerID: entry.resourceOwnerID,
            patientID: entry.patientID,
            outcome: entry.outcome,
            requestID: entry.requestID
        )
    }
}
