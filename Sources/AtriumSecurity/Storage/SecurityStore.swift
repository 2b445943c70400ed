import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumStorage
import Foundation
import GRDB
import AtriumRuntime

/// The security service's durable state, in one SQLite file: subscribers and their contract versions,
/// credentials, storage accounts, metered usage, notifications and the audit log.
///
/// Methods throw ``SecurityError`` for what the caller did wrong and database errors for the rest.
struct SecurityStore: Sendable {
    let database: DatabasePool
    /// Storage holds for uploads in progress (memory only; see ``reserve(subscriberID:bytes:reservationID:now:)``).
    let reservations = ReservationBook()

    /// Opens (creating and migrating) the database at `path`.
    init(path: String) throws {
        self.database = try ServiceDatabase.open(path: path, migrator: SecurityMigrations.migrator)
    }

    /// A subscriber with what belongs to it.
    struct SubscriberView: Sendable {
        var record: SubscriberRecord
        var patientIDs: [String]
        /// The contract in force, with its version and effective date.
        var contract: Atrium_V1_Contract

        var kind: Atrium_V1_SubscriberKind { Atrium_V1_SubscriberKind(rawValue: record.kind) ?? .unspecified }
        var status: Atrium_V1_SubscriberStatus { Atrium_V1_SubscriberStatus(rawValue: record.status) ?? .unspecified }
    }

    // MARK: - Subscribers and contracts

    /// Creates a subscriber with contract version 1.
    func createSubscriber(
        displayName: String,
        kind: Atrium_V1_SubscriberKind,
        patientIDs: [String] = [],
        externalID: String? = nil,
        contract: Atrium_V1_Contract,
        now: Date
    ) throws -> SubscriberView {
        let subscriber = SubscriberRecord(
            id: Identifier.make(prefix: "sub"),
            displayName: displayName,
            kind: kind.rawValue,
            status: Atrium_V1_SubscriberStatus.active.rawValue,
            externalID: externalID,
            createdAt: now,
            statusChangedAt: now
        )
        return try database.write { db in
            if let externalID, try SubscriberRecord.filter(Column("external_id") == externalID).fetchCount(db) > 0 {
                throw SecurityError.alreadyExists("external_id '\(externalID)' is already used by another subscriber")
            }
            try subscriber.insert(db)
            for patient in Set(patientIDs) {
                try SubscriberPatientRecord(subscriberID: subscriber.id, patientID: patient).insert(db)
            }
            try StorageAccountRecord(subscriberID: subscriber.id, usedBytes: 0, lastChangeAt: now, warning: false).insert(db)
            let terms = try Self.insertContract(contract, for: subscriber.id, version: 1, now: now, db: db)
            return SubscriberView(record: subscriber, patientIDs: patientIDs, contract: terms)
        }
    }

    /// The subscriber `id`; NOT_FOUND when unknown.
    func subscriber(_ id: String) throws -> SubscriberView {
        try database.read { db in try Self.view(of: id, db: db) }
    }

    /// Subscribers in ID order, optionally of one kind and status, after the ID `after`.
    func subscribers(kind: Atrium_V1_SubscriberKind?, status: Atrium_V1_SubscriberStatus?, after: String?, limit: Int) throws -> [SubscriberView] {
        try database.read { db in
            var request = SubscriberRecord.order(Column("id"))
            if let kind { request = request.filter(Column("kind") == kind.rawValue) }
            if let status { request = request.filter(Column("status") == status.rawValue) }
            if let after { request = request.filter(Column("id") > after) }
            return try request.limit(limit).fetchAll(db).map { try Self.view(of: $0, db: db) }
        }
    }

    /// The subscribers among `ids` that exist.
    func subscribers(ids: [String]) throws -> [SubscriberView] {
        try database.read { db in
            try SubscriberRecord.filter(keys: Set(ids)).fetchAll(db).map { try Self.view(of: $0, db: db) }
        }
    }

    /// Changes the display name and, when `patientIDs` is given, replaces the linked patients.
    func updateSubscriber(_ id: String, displayName: String?, patientIDs: [String]?) throws -> SubscriberView {
        try database.write { db in
            guard var record = try SubscriberRecord.fetchOne(db, key: id) else { throw Self.unknownSubscriber(id) }
            if let displayName {
                record.displayName = displayName
                try record.update(db)
            }
            if let patientIDs {
                try SubscriberPatientRecord.filter(Column("subscriber_id") == id).deleteAll(db)
                for patient in Set(patientIDs) {
                    try SubscriberPatientRecord(subscriberID: id, patientID: patient).insert(db)
                }
            }
            return try Self.view(of: record, db: db)
        }
    }

    /// Puts a new contract version in force.
    func setContract(_ id: String, _ contract: Atrium_V1_Contract, now: Date) throws -> Atrium_V1_Contract {
        try database.write { db in
            guard let record = try SubscriberRecord.fetchOne(db, key: id) else { throw Self.unknownSubscriber(id) }
            guard record.status != Atrium_V1_SubscriberStatus.terminated.rawValue else {
                throw SecurityError.failedPrecondition("subscriber '\(id)' is terminated; its contract cannot change")
            }
            let latest = try Self.latestContract(of: id, db: db)
            return try Self.insertContract(contract, for: id, version: Int(latest.version) + 1, now: now, db: db)
        }
    }

    /// Changes a subscriber's status. Terminating revokes every API key and certificate in the same transaction.
    func setStatus(_ id: String, to status: Atrium_V1_SubscriberStatus, now: Date) throws -> SubscriberView {
        try database.write { db in
            guard var record = try SubscriberRecord.fetchOne(db, key: id) else { throw Self.unknownSubscriber(id) }
            if record.status == Atrium_V1_SubscriberStatus.terminated.rawValue {
                throw SecurityError.failedPrecondition("subscriber '\(id)' is terminated; termination is final")
            }
            if record.status != status.rawValue {
                record.status = status.rawValue
                record.statusChangedAt = now
                try record.update(db)
            }
            if status == .terminated {
                try ApiKeyRecord.filter(Column("subscriber_id") == id && Column("revoked_at") == nil)
                    .updateAll(db, Column("revoked_at").set(to: now))
                try CertificateRecord.filter(Column("subscriber_id") == id && Column("revoked_at") == nil)
                    .updateAll(db, Column("revoked_at").set(to: now))
                try EnrollmentTokenRecord.filter(Column("subscriber_id") == id && Column("used_at") == nil)
                    .updateAll(db, Column("used_at").set(to: now))
            }
            return try Self.view(of: record, db: db)
        }
    }

    /// The contract version in force at `date` (the first version if `date` is before it).
    func contract(of id: String, at date: Date) throws -> Atrium_V1_Contract {
        try database.read { db in
            let row =
                try ContractRecord.filter(Column("subscriber_id") == id && Column("effective_from") <= date).order(Column("version").desc).fetchOne(db)
                ?? ContractRecord.filter(Column("subscriber_id") == id).order(Column("version")).fetchOne(db)
            guard let row else { throw Self.unknownSubscriber(id) }
            return try Atrium_V1_Contract(serializedBytes: row.terms)
        }
    }

    /// Whether any operator subscriber exists.
    func hasOperator() throws -> Bool {
        try database.read { db in
            try SubscriberRecord.filter(Column("kind") == Atrium_V1_SubscriberKind.operator.rawValue).fetchCount(db) > 0
        }
    }

    // MARK: - Helpers shared by the extensions

    static func unknownSubscriber(_ id: String) -> SecurityError {
        .notFound("no subscriber '\(id)'")
    }

    static func view(of id: String, db: Database) throws -> SubscriberView {
        guard let record = try SubscriberRecord.fetchOne(db, key: id) else { throw unknownSubscriber(id) }
        return try view(of: record, db: db)
    }

    static func view(of record: SubscriberRecord, db: Database) throws -> SubscriberView {
        let patients = try String.fetchAll(
            db,
            sql: "SELECT patient_id FROM subscriber_patient WHERE subscriber_id = ? ORDER BY patient_id",
            arguments: [record.id]
        )
        return SubscriberView(record: record, patientIDs: patients, contract: try latestContract(of: record.id, db: db))
    }

    static func latestContract(of id: String, db: Database) throws -> Atrium_V1_Contract {
        guard let row = try ContractRecord.filter(Column("subscriber_id") == id).order(Column("version").desc).fetchOne(db) else {
            return Atrium_V1_Contract()
        }
        return try Atrium_V1_Contract(serializedBytes: row.terms)
    }

    private static func insertContract(_ contract: Atrium_V1_Contract, for id: String, version: Int, now: Date, db: Database) throws -> Atrium_V1_Contract {
        var terms = contract
        terms.version = UInt32(version)
        terms.effectiveFrom = .init(date: now)
        try ContractRecord(
            subscriberID: id,
            version: version,
            roles: terms.roles.map(\.rawValue).sorted().map(String.init).joined(separator: ","),
            terms: try terms.serializedBytes(),
            effectiveFrom: now
        ).insert(db)
        return terms
    }
}
