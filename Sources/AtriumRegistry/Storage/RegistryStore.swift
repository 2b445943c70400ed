import AtriumStorage
import Foundation
import GRDB

/// The registry's index: image records in one SQLite file (WAL, fsync on commit).
struct RegistryStore: Sendable {
    private let database: DatabasePool

    /// Opens (creating and migrating) the database at `path`.
    init(path: String) throws {
        self.database = try ServiceDatabase.open(path: path, migrator: RegistryMigrations.migrator)
    }

    /// Commits a new record and the settlement it owes (on GRDB's writer queue, not on a task thread), in one
    /// transaction. The blob it names must already be durable.
    ///
    /// - Returns: whether the registrant already had these bytes; if so, the settlement commits 0 bytes, since
    ///   the stored bytes are counted once per subscriber.
    func commit(_ row: ImageRow, reservationID: String) async throws -> Bool {
        try await database.write { db in
            let alreadyHad = try ImageRow.filter(Column("registrant_id") == row.registrantID && Column("sha256") == row.sha256).fetchCount(db) > 0
            try row.insert(db)
            try SettlementRow(
                reservationID: reservationID,
                subscriberID: row.registrantID,
                committedBytes: alreadyHad ? 0 : row.sizeBytes,
                createdAt: row.registeredAt
            ).insert(db)
            return alreadyHad
        }
    }

    /// Settlements not yet acknowledged by security, oldest first.
    func pendingSettlements(limit: Int) async throws -> [SettlementRow] {
        try await database.read { db in try SettlementRow.order(Column("created_at")).limit(limit).fetchAll(db) }
    }

    /// Forgets settlements security has acknowledged.
    func removeSettlements(_ reservationIDs: [String]) async throws {
        _ = try await database.write { db in try SettlementRow.deleteAll(db, keys: reservationIDs) }
    }

    /// The record with `id`, if any.
    func image(id: String) throws -> ImageRow? {
        try database.read { db in try ImageRow.fetchOne(db, key: id) }
    }
}
