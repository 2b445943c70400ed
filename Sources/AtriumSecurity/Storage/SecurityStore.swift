import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumStorage
import Foundation
import GRDB

/// The security service's durable state: subscribers, contract versions and API keys, in one SQLite file.
struct SecurityStore: Sendable {
    private let database: DatabasePool

    /// Opens (creating and migrating) the database at `path`.
    init(path: String) throws {
        self.database = try ServiceDatabase.open(path: path, migrator: SecurityMigrations.migrator)
    }

    /// What an API key resolves to.
    enum KeyLookup: Sendable {
        case valid(SubscriberRecord, ContractRecord?)
        case unknown
        case revoked
        case expired
    }

    /// Creates a subscriber with a first contract granting `roles`.
    func createSubscriber(
        displayName: String,
        kind: Atrium_V1_SubscriberKind,
        contract: Atrium_V1_Contract,
        now: Date
    ) throws -> SubscriberRecord {
        let subscriber = SubscriberRecord(
            id: Identifier.make(prefix: "sub"),
            displayName: displayName,
            kind: kind.rawValue,
            status: Atrium_V1_SubscriberStatus.active.rawValue,
            externalID: nil,
            createdAt: now,
            statusChangedAt: now
        )
        var terms = contract
        terms.version = 1
        terms.effectiveFrom = .init(date: now)
        let record = ContractRecord(
            subscriberID: subscriber.id,
            version: 1,
            roles: contract.roles.map(\.rawValue).sorted().map(String.init).joined(separator: ","),
            terms: try terms.serializedBytes(),
            effectiveFrom: now
        )
        try database.write { db in
            try subscriber.insert(db)
            try record.insert(db)
        }
        return subscriber
    }

    /// Makes a new API key for a subscriber; returns the record and the whole key (shown once).
    func createApiKey(subscriberID: String, label: String, expiresAt: Date?, now: Date) throws -> (ApiKeyRecord, String) {
        let key = ApiKeySecret.generate()
        let salt = ApiKeySecret.makeSalt()
        let record = ApiKeyRecord(
            prefix: key.prefix,
            subscriberID: subscriberID,
            label: label,
            salt: salt,
            hash: key.hash(salt: salt),
            createdAt: now,
            expiresAt: expiresAt,
            revokedAt: nil
        )
        try database.write { db in try record.insert(db) }
        return (record, key.text)
    }

    /// Whether any operator subscriber exists.
    func hasOperator() throws -> Bool {
        try database.read { db in
            try SubscriberRecord.filter(Column("kind") == Atrium_V1_SubscriberKind.operator.rawValue).fetchCount(db) > 0
        }
    }

    /// Resolves a presented API key.
    func lookup(_ key: ApiKeySecret, now: Date) throws -> KeyLookup {
        try database.read { db in
            guard let record = try ApiKeyRecord.fetchOne(db, key: key.prefix), key.matches(salt: record.salt, hash: record.hash) else {
                return .unknown
            }
            if record.revokedAt != nil { return .revoked }
            if let expiry = record.expiresAt, expiry <= now { return .expired }
            guard let subscriber = try SubscriberRecord.fetchOne(db, key: record.subscriberID) else { return .unknown }
            let contract = try ContractRecord
                .filter(Column("subscriber_id") == subscriber.id)
                .order(Column("version").desc)
                .fetchOne(db)
            return .valid(subscriber, contract)
        }
    }
}
