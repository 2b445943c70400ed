import AtriumStorage
import Foundation
import GRDB

/// A row of `job`: one submitted job, from QUEUED to SUCCEEDED, FAILED or CANCELLED.
struct JobRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "job"
    var id: String
    /// The submitter's identity (a serialized `CallerIdentity`).
    var submitter: Data
    var submitterID: String
    /// The request's header (a serialized `RunHeader`) as validated.
    var header: Data
    /// `ProcessingJob.State` raw value.
    var state: Int
    /// Microseconds since 1970, UTC (also the listing order).
    var createdAt: Int64
    var startedAt: Int64?
    var finishedAt: Int64?
    var resultsExpireAt: Int64?
    var inputCount: Int
    var inputsDone: Int
    /// Input megapixels, for the ETA.
    var megapixels: Double
    var failureCode: Int
    var failureReason: String
    var resultCount: Int
    var cpuSeconds: Double
    /// Stored input image IDs in the order used (series resolved), space-separated; empty for inline inputs.
    var inputImageIDs: String

}

/// A row of `job_input`: an inline input of a job, kept in the instance's input store until the job ends.
struct JobInputRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "job_input"
    var jobID: String
    var index: Int
    var sha256: String
    var size: Int64

    /// Columns named by abbreviation (see ``SnakeCaseColumns``).
    static let columnRenames = ["index": "idx"]
}

/// A row of `job_result`: one result of a job, its bytes in the instance's result store.
struct JobResultRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "job_result"
    var jobID: String
    var index: Int
    var sha256: String
    var size: Int64
    var imageID: String
    var rows: Int
    var columns: Int
    var bitsAllocated: Int
    /// Input indices, space-separated.
    var inputIndices: String

    /// Columns named by abbreviation (see ``SnakeCaseColumns``).
    static let columnRenames = ["index": "idx"]
}

/// An inbox entry owed to destinations, committed with the work it reports and sent to delivery afterwards.
struct NoticeRow: Sendable {
    var sequence: Int64
    var recipients: [String]
    var entryKey: String
    /// A serialized `InboxEntry`.
    var entry: Data
}

/// The processing instance's database: its jobs, their inputs and results, and the inbox notices it owes.
struct JobStore: Sendable {
    private let database: DatabasePool

    init(path: String) throws {
        database = try ServiceDatabase.open(path: path, migrator: Self.migrator)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 jobs") { db in
            try db.create(table: "job") { t in
                t.primaryKey("id", .text)
                t.column("submitter", .blob).notNull()
                t.column("submitter_id", .text).notNull()
                t.column("header", .blob).notNull()
                t.column("state", .integer).notNull()
                t.column("created_at", .integer).notNull()
                t.column("started_at", .integer)
                t.column("finished_at", .integer)
                t.column("results_expire_at", .integer)
                t.column("input_count", .integer).notNull()
                t.column("inputs_done", .integer).notNull()
                t.column("megapixels", .double).notNull()
                t.column("failure_code", .integer).notNull()
                t.column("failure_reason", .text).notNull()
                t.column("result_count", .integer).notNull()
                t.column("cpu_seconds", .double).notNull()
                t.column("input_image_ids", .text).notNull()
            }
            try db.create(index: "job_by_submitter", on: "job", columns: ["submitter_id", "created_at", "id"])
            try db.create(index: "job_by_state", on: "job", columns: ["state", "created_at"])
            try db.create(table: "job_input") { t in
                t.column("job_id", .text).notNull().references("job", onDelete: .cascade)
                t.column("idx", .integer).notNull()
                t.column("sha256", .text).notNull()
                t.column("size", .integer).notNull()
                t.primaryKey(["job_id", "idx"])
            }
            try db.create(index: "job_input_by_blob", on: "job_input", columns: ["sha256"])
            try db.create(table: "job_result") { t in
                t.column("job_id", .text).notNull().references("job", onDelete: .cascade)
                t.column("idx", .integer).notNull()
                t.column("sha256", .text).notNull()
                t.column("size", .integer).notNull()
                t.column("image_id", .text).notNull()
                t.column("rows", .integer).notNull()
                t.column("columns", .integer).notNull()
                t.column("bits_allocated", .integer).notNull()
                t.column("input_indices", .text).notNull()
                t.primaryKey(["job_id", "idx"])
            }
            try db.create(index: "job_result_by_blob", on: "job_result", columns: ["sha256"])
            try db.create(table: "notice_outbox") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("recipients", .text).notNull()
                t.column("entry_key", .text).notNull()
                t.column("entry", .blob).notNull()
            }
        }
        return migrator
    }

    // MARK: - Jobs

    func insert(_ job: JobRow, inputs: [JobInputRow]) async throws {
        try await database.write { db in
            try job.insert(db)
            for input in inputs { try input.insert(db) }
        }
    }

    func job(_ id: String) async throws -> JobRow? {
        try await database.read { db in try JobRow.fetchOne(db, key: id) }
    }

    func inputs(of jobID: String) async throws -> [JobInputRow] {
        try await database.read { db in
            try JobInputRow.filter(Column("job_id") == jobID).order(Column("idx")).fetchAll(db)
        }
    }

    func results(of jobID: String) async throws -> [JobResultRow] {
        try await database.read { db in
            try JobResultRow.filter(Column("job_id") == jobID).order(Column("idx")).fetchAll(db)
        }
    }

    /// The next queued job, oldest first.
    func nextQueued() async throws -> JobRow? {
        try await database.read { db in
            try JobRow.filter(Column("state") == JobState.queued).order(Column("created_at"), Column("id")).fetchOne(db)
        }
    }

    /// Queued jobs in queue order, with their megapixels (positions and ETAs).
    func queue() async throws -> [(id: String, megapixels: Double)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT id, megapixels FROM job WHERE state = ? ORDER BY created_at, id", arguments: [JobState.queued]).map {
                ($0["id"], $0["megapixels"])
            }
        }
    }

    /// Moves a queued job to RUNNING; false when it is no longer queued (cancelled meanwhile).
    func start(_ id: String, at time: Int64) async throws -> Bool {
        try await database.write { db in
            try db.execute(sql: "UPDATE job SET state = ?, started_at = COALESCE(started_at, ?) WHERE id = ? AND state = ?", arguments: [JobState.running, time, id, JobState.queued])
            return db.changesCount == 1
        }
    }

    /// Records results (idempotent by index) and the job's progress, in one transaction.
    func add(_ results: [JobResultRow], inputsDone: Int) async throws {
        guard let jobID = results.first?.jobID else { return }
        try await database.write { db in
            for result in results { try result.insert(db, onConflict: .replace) }
            try db.execute(sql: "UPDATE job SET inputs_done = MAX(inputs_done, ?) WHERE id = ?", arguments: [inputsDone, jobID])
        }
    }

    /// Records progress without a result (projections fold many inputs into one).
    func progress(_ id: String, inputsDone: Int, cpuSeconds: Double) async throws {
        try await database.write { db in
            try db.execute(sql: "UPDATE job SET inputs_done = MAX(inputs_done, ?), cpu_seconds = ? WHERE id = ?", arguments: [inputsDone, cpuSeconds, id])
        }
    }

    /// Records the resolved inputs of a job when it starts.
    func setInputs(_ id: String, imageIDs: [String], megapixels: Double) async throws {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE job SET input_image_ids = ?, input_count = ?, megapixels = ? WHERE id = ?",
                arguments: [imageIDs.joined(separator: " "), imageIDs.count, megapixels, id]
            )
        }
    }

    /// Ends a running job as SUCCEEDED, with the inbox notice for its destinations in the same transaction;
    /// false when it was cancelled meanwhile.
    func succeed(_ id: String, at time: Int64, expiresAt: Int64, resultCount: Int, cpuSeconds: Double, notice: NoticeRow?) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: """
                    UPDATE job SET state = ?, finished_at = ?, results_expire_at = ?, result_count = ?, cpu_seconds = ?, inputs_done = input_count
                    WHERE id = ? AND state = ?
                    """,
                arguments: [JobState.succeeded, time, expiresAt, resultCount, cpuSeconds, id, JobState.running]
            )
            guard db.changesCount == 1 else { return false }
            if let notice { try Self.insert(notice, db) }
            return true
        }
    }

    /// Ends a queued or running job as FAILED or CANCELLED; false when it had already ended.
    func finish(_ id: String, state: Int, at time: Int64, code: Int, reason: String) async throws -> Bool {
        try await database.write { db in
            try db.execute(
                sql: "UPDATE job SET state = ?, finished_at = ?, failure_code = ?, failure_reason = ? WHERE id = ? AND state IN (?, ?)",
                arguments: [state, time, code, reason, id, JobState.queued, JobState.running]
            )
            return db.changesCount == 1
        }
    }

    /// Jobs left RUNNING by a previous process: back to QUEUED, to resume from their recorded results.
    func requeueInterrupted() async throws -> [String] {
        try await database.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM job WHERE state = ?", arguments: [JobState.running])
            try db.execute(sql: "UPDATE job SET state = ? WHERE state = ?", arguments: [JobState.queued, JobState.running])
            return ids
        }
    }

    /// A page of `submitterID`'s jobs, newest first, after the keyset position `after`.
    func jobs(submitterID: String, states: [Int], createdFrom: Int64?, createdTo: Int64?, after: (time: Int64, id: String)?, limit: Int) async throws -> [JobRow] {
        try await database.read { db in
            var clauses = ["submitter_id = ?"]
            var arguments: [any DatabaseValueConvertible] = [submitterID]
            if !states.isEmpty {
                clauses.append("state IN (\(Array(repeating: "?", count: states.count).joined(separator: ", ")))")
                arguments += states as [any DatabaseValueConvertible]
            }
            if let createdFrom {
                clauses.append("created_at >= ?")
                arguments.append(createdFrom)
            }
            if let createdTo {
                clauses.append("created_at < ?")
                arguments.append(createdTo)
            }
            if let after {
                clauses.append("(created_at < ? OR (created_at = ? AND id > ?))")
                arguments += [after.time, after.time, after.id]
            }
            return try JobRow.fetchAll(
                db,
                sql: "SELECT * FROM job WHERE \(clauses.joined(separator: " AND ")) ORDER BY created_at DESC, id LIMIT ?",
                arguments: StatementArguments(arguments + [limit])
            )
        }
    }

    /// Jobs whose results expired by `now`: their result and input rows go; the blobs they alone used are returned.
    func expire(before now: Int64) async throws -> (results: [String], inputs: [String]) {
        try await database.write { db in
            let ids = try String.fetchAll(db, sql: "SELECT id FROM job WHERE results_expire_at IS NOT NULL AND results_expire_at <= ?", arguments: [now])
            guard !ids.isEmpty else { return ([], []) }
            var results: Set<String> = []
            var inputs: Set<String> = []
            for id in ids {
                results.formUnion(try String.fetchAll(db, sql: "SELECT sha256 FROM job_result WHERE job_id = ?", arguments: [id]))
                inputs.formUnion(try String.fetchAll(db, sql: "SELECT sha256 FROM job_input WHERE job_id = ?", arguments: [id]))
                try db.execute(sql: "DELETE FROM job_result WHERE job_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM job_input WHERE job_id = ?", arguments: [id])
                try db.execute(sql: "UPDATE job SET results_expire_at = NULL WHERE id = ?", arguments: [id])
            }
            let stillUsedResults = try Set(String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM job_result"))
            let stillUsedInputs = try Set(String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM job_input"))
            return (Array(results.subtracting(stillUsedResults)), Array(inputs.subtracting(stillUsedInputs)))
        }
    }

    /// Whether a queued or running job (other than `jobID`) still needs the input blob `sha256`.
    func inputInUse(_ sha256: String, except jobID: String = "") async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(
                db,
                sql: """
                    SELECT EXISTS (SELECT 1 FROM job_input JOIN job ON job.id = job_input.job_id
                    WHERE job_input.sha256 = ? AND job.id != ? AND job.state IN (?, ?))
                    """,
                arguments: [sha256, jobID, JobState.queued, JobState.running]
            ) ?? false
        }
    }

    // MARK: - Notices

    func addNotice(_ notice: NoticeRow) async throws {
        try await database.write { db in try Self.insert(notice, db) }
    }

    private static func insert(_ notice: NoticeRow, _ db: Database) throws {
        try db.execute(
            sql: "INSERT INTO notice_outbox (recipients, entry_key, entry) VALUES (?, ?, ?)",
            arguments: [notice.recipients.joined(separator: " "), notice.entryKey, notice.entry]
        )
    }

    func pendingNotices(limit: Int) async throws -> [NoticeRow] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT sequence, recipients, entry_key, entry FROM notice_outbox ORDER BY sequence LIMIT ?", arguments: [limit]).map {
                NoticeRow(sequence: $0["sequence"], recipients: ($0["recipients"] as String).split(separator: " ").map(String.init), entryKey: $0["entry_key"], entry: $0["entry"])
            }
        }
    }

    func removeNotice(_ sequence: Int64) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM notice_outbox WHERE sequence = ?", arguments: [sequence]) }
    }
}

/// `ProcessingJob.State` raw values, as stored.
enum JobState {
    static let queued = 1
    static let running = 2
    static let succeeded = 3
    static let failed = 4
    static let cancelled = 5
}
