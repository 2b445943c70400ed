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

    /// Commits a new record (on GRDB's writer queue, not on a task thread). The blob it names must already
    /// be durable.
    func insert(_ row: ImageRow) async throws {
        try await database.write { db in try row.insert(db) }
    }

    /// Whether `registrant` already has a record of these bytes.
    func registrant(_ registrantID: String, hasBytes sha256: String) async throws -> Bool {
        try await database.read { db in
            try ImageRow.filter(Column("registrant_id") == registrantID && Column("sha256") == sha256).fetchCount(db) > 0
        }
    }

    /// The record with `id`, if any.
    func image(id: String) throws -> ImageRow? {
        try database.read { db in try ImageRow.fetchOne(db, key: id) }
    }
}
