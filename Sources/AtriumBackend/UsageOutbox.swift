import SwiftProtobuf
public import AtriumAPI
import AtriumStorage
import Foundation
import GRDB

/// Metered usage events (delivered images, processing runs), written before the work is reported done and drained to
/// security in batches (``UsageSender``). Written first, so an image the receiver got is counted even if delivery
/// is killed a moment later; keyed by event ID, which security also deduplicates, so a resumed image is counted once.
///
/// A separate file committed with `synchronous = NORMAL`: an append survives the process being killed (the log is
/// written at commit) without costing an fsync per image; a power cut may lose the last few events.
public struct UsageOutbox: Sendable {
    private let database: DatabasePool

    public init(path: String) throws {
        database = try ServiceDatabase.open(path: path, migrator: Self.migrator, durability: .processCrash)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 usage outbox") { db in
            try db.create(table: "usage_outbox") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("event_id", .text).notNull().unique(onConflict: .ignore)
                t.column("event", .blob).notNull()
            }
        }
        return migrator
    }

    /// Appends an event (a repeated event ID is ignored); returns once it is written.
    ///
    /// Synchronous on purpose: without an fsync the insert takes tens of microseconds, less than handing it to
    /// another thread and back would (GRDB runs an uncontended write on the calling thread).
    public func add(_ event: Atrium_V1_UsageEvent) throws {
        try add([event])
    }

    /// Appends several events in one transaction (a repeated event ID is ignored); returns once they are written.
    public func add(_ events: [Atrium_V1_UsageEvent]) throws {
        guard !events.isEmpty else { return }
        let rows: [(String, Data)] = try events.map { ($0.eventID, try $0.serializedBytes()) }
        try database.write { db in
            for (id, bytes) in rows {
                try db.execute(sql: "INSERT INTO usage_outbox (event_id, event) VALUES (?, ?)", arguments: [id, bytes])
            }
        }
    }

    /// The oldest events, up to `limit`, with their sequence numbers.
    public func pending(limit: Int) async throws -> [(sequence: Int64, event: Atrium_V1_UsageEvent)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT sequence, event FROM usage_outbox ORDER BY sequence LIMIT ?", arguments: [limit]).map { row in
                (row["sequence"], try Atrium_V1_UsageEvent(serializedBytes: row["event"] as Data))
            }
        }
    }

    /// Removes events security has recorded, up to and including `sequence`.
    public func remove(through sequence: Int64) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM usage_outbox WHERE sequence <= ?", arguments: [sequence]) }
    }
}
