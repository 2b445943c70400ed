import AtriumStorage
import Foundation
import GRDB

/// A row of `print_job`: one film sheet handed to a printer.
struct PrintJobRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "print_job"
    var id: String
    /// Submission order: the order a printer receives its jobs in.
    var sequence: Int64
    var submitterID: String
    /// The submitter's serialized `CallerIdentity` at submission: the printer fetches with the submitter's
    /// visibility, re-checked by the registry at each fetch.
    var submitter: Data
    var printerID: String
    /// Serialized `FilmBox`.
    var filmBox: Data
    /// The image IDs, in layout order, joined with spaces.
    var imageIDs: String
    var copies: Int
    /// `PrintJob.State` raw value.
    var state: Int
    var failureReason: String
    var submittedAt: Date
    var completedAt: Date?


    var images: [String] { imageIDs.split(separator: " ").map(String.init) }
}

/// A row of `inbox_entry`: something delivered to a subscriber, kept until acknowledged.
struct InboxRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "inbox_entry"
    var subscriberID: String
    var cursor: Int64
    var entryKey: String
    var source: String
    var kind: String
    /// Serialized `InboxEntry` carrying the images, message and job ID (the columns above are what queries use).
    var entry: Data
    var createdAt: Date

}

/// A row of `variant`: an image's bytes in another encoding, cached in delivery's own blob store.
struct VariantRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "variant"
    var sourceSHA256: String
    /// `Encoding` raw value: the encoding asked for.
    var encoding: Int
    /// `Encoding` raw value: the encoding delivered (differs when the asked one cannot code the pixels).
    var deliveredEncoding: Int
    /// The delivered bytes: a blob of delivery's variant store, or the original's own hash when the original is
    /// what is delivered.
    var sha256: String
    var sizeBytes: Int64
    var transferSyntaxUID: String
    /// Why the delivered encoding differs from the asked one (then `sha256` may be the source's own).
    var note: String
    var createdAt: Date

}

/// Delivery's own state, in one SQLite file (WAL, fsync on commit): print jobs, inboxes and the index of cached
/// variants. Image bytes are not here: originals are in the registry's blob store, variants in delivery's.
struct DeliveryStore: Sendable {
    private let database: DatabasePool

    init(path: String) throws {
        database = try ServiceDatabase.open(path: path, migrator: Self.migrator)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 print jobs, inboxes, variants") { db in
            try db.create(table: "print_job") { t in
                t.primaryKey("id", .text)
                t.column("sequence", .integer).notNull().unique()
                t.column("submitter_id", .text).notNull()
                t.column("submitter", .blob).notNull()
                t.column("printer_id", .text).notNull()
                t.column("film_box", .blob).notNull()
                t.column("image_ids", .text).notNull()
                t.column("copies", .integer).notNull()
                t.column("state", .integer).notNull()
                t.column("failure_reason", .text).notNull()
                t.column("submitted_at", .datetime).notNull()
                t.column("completed_at", .datetime)
            }
            try db.create(index: "print_job_by_printer", on: "print_job", columns: ["printer_id", "state", "sequence"])
            try db.create(table: "inbox_entry") { t in
                t.column("subscriber_id", .text).notNull()
                t.column("cursor", .integer).notNull()
                t.column("entry_key", .text).notNull()
                t.column("source", .text).notNull()
                t.column("kind", .text).notNull()
                t.column("entry", .blob).notNull()
                t.column("created_at", .datetime).notNull()
                t.primaryKey(["subscriber_id", "cursor"])
                t.uniqueKey(["subscriber_id", "entry_key"])
            }
            try db.create(table: "inbox_ack") { t in
                t.primaryKey("subscriber_id", .text)
                t.column("cursor", .integer).notNull()
            }
            try db.create(table: "variant") { t in
                t.column("source_sha256", .text).notNull()
                t.column("encoding", .integer).notNull()
                t.column("delivered_encoding", .integer).notNull()
                t.column("sha256", .text).notNull()
                t.column("size_bytes", .integer).notNull()
                t.column("transfer_syntax_uid", .text).notNull()
                t.column("note", .text).notNull()
                t.column("created_at", .datetime).notNull()
                t.primaryKey(["source_sha256", "encoding"])
            }
        }
        return migrator
    }

    // MARK: - Print jobs

    /// Inserts a new job at the end of the submission order; returns it with its sequence number.
    func insert(_ job: PrintJobRow) async throws -> PrintJobRow {
        try await database.write { db in
            var job = job
            job.sequence = (try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM print_job") ?? 0) + 1
            try job.insert(db)
            return job
        }
    }

    func job(id: String) async throws -> PrintJobRow? {
        try await database.read { db in try PrintJobRow.fetchOne(db, key: id) }
    }

    /// The printer's open jobs (pending or dispatched) after `sequence`, in submission order.
    func openJobs(printerID: String, after sequence: Int64, limit: Int = 100) async throws -> [PrintJobRow] {
        try await database.read { db in
            try PrintJobRow
                .filter(Column("printer_id") == printerID && Column("sequence") > sequence && PrintJobState.open.map(\.rawValue).contains(Column("state")))
                .order(Column("sequence"))
                .limit(limit)
                .fetchAll(db)
        }
    }

    /// Moves a job from one of `from` states to `to`; returns the updated row, or `nil` when it was in no such state.
    func transition(
        jobID: String,
        from: [PrintJobState],
        to: PrintJobState,
        failureReason: String = "",
        completedAt: Date? = nil
    ) async throws -> PrintJobRow? {
        try await database.write { db in
            guard var job = try PrintJobRow.fetchOne(db, key: jobID), from.map(\.rawValue).contains(job.state) else { return nil }
            job.state = to.rawValue
            job.failureReason = failureReason
            job.completedAt = completedAt
            try job.update(db)
            return job
        }
    }

    // MARK: - Inbox

    /// Appends `entry` to each recipient's inbox unless the recipient already has `entryKey`; returns each
    /// recipient's cursor for it (new or existing).
    func deliver(recipients: [String], entryKey: String, source: String, kind: String, entry: Data, at now: Date) async throws -> [String: Int64] {
        try await database.write { db in
            var cursors: [String: Int64] = [:]
            for recipient in recipients {
                if let existing = try InboxRow.filter(Column("subscriber_id") == recipient && Column("entry_key") == entryKey).fetchOne(db) {
                    cursors[recipient] = existing.cursor
                    continue
                }
                let cursor = (try Int64.fetchOne(db, sql: "SELECT MAX(cursor) FROM inbox_entry WHERE subscriber_id = ?", arguments: [recipient]) ?? 0) + 1
                // Acknowledged entries may have been pruned: never reuse a cursor at or below the acknowledgement.
                let acknowledged = try Int64.fetchOne(db, sql: "SELECT cursor FROM inbox_ack WHERE subscriber_id = ?", arguments: [recipient]) ?? 0
                let row = InboxRow(
                    subscriberID: recipient, cursor: max(cursor, acknowledged + 1), entryKey: entryKey, source: source, kind: kind,
                    entry: entry, createdAt: now
                )
                try row.insert(db)
                cursors[recipient] = row.cursor
            }
            return cursors
        }
    }

    /// The subscriber's entries after `cursor` (or after its acknowledgement when `cursor` is `nil`), oldest first.
    func inbox(subscriberID: String, after cursor: Int64?, limit: Int) async throws -> [InboxRow] {
        try await database.read { db in
            let start = try cursor ?? Self.acknowledged(db, subscriberID)
            return try InboxRow
                .filter(Column("subscriber_id") == subscriberID && Column("cursor") > start)
                .order(Column("cursor"))
                .limit(limit)
                .fetchAll(db)
        }
    }

    func acknowledged(subscriberID: String) async throws -> Int64 {
        try await database.read { db in try Self.acknowledged(db, subscriberID) }
    }

    /// Acknowledges entries up to `cursor`, clamped to the last entry (a cursor not yet assigned cannot be
    /// acknowledged in advance) and never moving backwards; returns the acknowledged cursor.
    func acknowledge(subscriberID: String, upTo cursor: Int64) async throws -> Int64 {
        try await database.write { db in
            let last = try Int64.fetchOne(db, sql: "SELECT MAX(cursor) FROM inbox_entry WHERE subscriber_id = ?", arguments: [subscriberID]) ?? 0
            let current = try Self.acknowledged(db, subscriberID)
            let next = max(current, min(cursor, last))
            if next != current {
                try db.execute(
                    sql: "INSERT INTO inbox_ack (subscriber_id, cursor) VALUES (?, ?) ON CONFLICT(subscriber_id) DO UPDATE SET cursor = excluded.cursor",
                    arguments: [subscriberID, next]
                )
            }
            return next
        }
    }

    private static func acknowledged(_ db: Database, _ subscriberID: String) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT cursor FROM inbox_ack WHERE subscriber_id = ?", arguments: [subscriberID]) ?? 0
    }

    // MARK: - Variants

    func variant(sourceSHA256: String, encoding: Int) async throws -> VariantRow? {
        try await database.read { db in
            try VariantRow.filter(Column("source_sha256") == sourceSHA256 && Column("encoding") == encoding).fetchOne(db)
        }
    }

    /// Records a variant (its bytes must already be durable in delivery's blob store).
    func save(_ variant: VariantRow) async throws {
        try await database.write { db in try variant.insert(db, onConflict: .replace) }
    }

    /// Forgets a variant whose cached bytes are gone or damaged.
    func forget(sourceSHA256: String, encoding: Int) async throws {
        _ = try await database.write { db in
            try VariantRow.filter(Column("source_sha256") == sourceSHA256 && Column("encoding") == encoding).deleteAll(db)
        }
    }
}

/// The states of a print job, as stored (`PrintJob.State` raw values).
enum PrintJobState: Int, Sendable {
    case pending = 1
    case dispatched = 2
    case printed = 3
    case failed = 4

    /// A job the printer still has to print: its fetch capability is open.
    static let open: [PrintJobState] = [.pending, .dispatched]
}
