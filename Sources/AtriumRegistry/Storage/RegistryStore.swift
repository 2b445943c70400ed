import AtriumCore
import AtriumStorage
import Crypto
import Foundation
import GRDB

/// How committing a new record ended.
enum CommitOutcome: Sendable {
    /// The record was inserted; `alreadyHadBytes` when the registrant already stored these exact bytes.
    case inserted(alreadyHadBytes: Bool)
    /// The registrant's current record of this SOP instance has the same bytes: nothing was inserted.
    case duplicate(ImageRow)
    /// The registrant's current record of this SOP instance has other bytes, and no supersede was asked.
    case conflict(ImageRow)
}

/// A study or series as a listing returns it: aggregates over the visible current records of the group.
struct GroupSummary: Sendable {
    var key: String
    var studyUID: String?
    var patientID: String?
    var patientName: String?
    var modalities: [String]
    var bodyPart: String?
    var seriesCount: Int
    var imageCount: Int
    var firstAcquiredAt: Date?
    var representativeImageID: String?
}

/// The registry's index: image records, conditions, thumbnails and share grants in one SQLite file (WAL,
/// fsync on commit). Listings read only this file, never blobs.
struct RegistryStore: Sendable {
    private let database: DatabasePool
    private let commits: GroupCommit<CommitOutcome>

    /// Opens (creating and migrating) the database at `path`.
    init(path: String) throws {
        self.database = try ServiceDatabase.open(path: path, migrator: RegistryMigrations.migrator)
        self.commits = GroupCommit(database: database, label: "registry.commit")
    }

    // MARK: - Ingest

    /// Commits a new record, its first conditions version, its thumbnail and the settlement it owes, in one
    /// transaction (on GRDB's writer queue, not on a task thread). The blob it names must already be durable.
    ///
    /// The registrant's current record of the same SOP instance decides: same bytes, nothing is inserted
    /// (`duplicate`); other bytes, `conflict`, unless `supersede`, when the old record stays readable but is
    /// no longer current. The settlement commits 0 bytes when the registrant already stored these bytes.
    func commit(
        _ row: ImageRow,
        conditions: ConditionsRow,
        thumbnail: ThumbnailRow?,
        draw: StorageLeases.Draw,
        supersede: Bool
    ) async throws -> CommitOutcome {
        try await commits.submit { db in
            var row = row
            if let sop = row.sopInstanceUID, var current = try currentImage(db, registrantID: row.registrantID, sopInstanceUID: sop) {
                if current.sha256 == row.sha256 { return .duplicate(current) }
                guard supersede else { return .conflict(current) }
                current.supersededBy = row.id
                try current.update(db)
                row.supersedesImageID = current.id
            }
            // Cached statements: these two run for every upload, and compiling SQL each time costs more than running it.
            let alreadyHad = try Bool.fetchOne(
                db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM image WHERE sha256 = ? AND registrant_id = ?)"),
                arguments: [row.sha256, row.registrantID]
            ) ?? false
            if let thumbnail { try thumbnail.insert(db, onConflict: .ignore) }
            try row.insert(db)
            try conditions.insert(db)
            try SettlementRow(
                reservationID: draw.id,
                subscriberID: row.registrantID,
                committedBytes: alreadyHad ? 0 : row.sizeBytes,
                createdAt: row.registeredAt,
                leaseID: draw.leaseID,
                drawnBytes: Int64(draw.bytes),
                commits: true
            ).insert(db)
            return .inserted(alreadyHadBytes: alreadyHad)
        }
    }

    /// The registrant's current record of a SOP instance, if any.
    func currentImage(registrantID: String, sopInstanceUID: String) throws -> ImageRow? {
        try database.read { db in try currentImage(db, registrantID: registrantID, sopInstanceUID: sopInstanceUID) }
    }

    private func currentImage(_ db: Database, registrantID: String, sopInstanceUID: String) throws -> ImageRow? {
        try ImageRow.fetchOne(
            db.cachedStatement(sql: "SELECT * FROM image WHERE registrant_id = ? AND sop_instance_uid = ? AND superseded_by IS NULL"),
            arguments: [registrantID, sopInstanceUID]
        )
    }

    /// Settlements not yet acknowledged by security, oldest first.
    func pendingSettlements(limit: Int) async throws -> [SettlementRow] {
        try await database.read { db in try SettlementRow.order(Column("created_at")).limit(limit).fetchAll(db) }
    }

    /// Queues a settlement that is not an image's (a lease's release) for the outbox.
    func enqueue(_ settlement: SettlementRow) async throws {
        try await database.write { db in try settlement.insert(db) }
    }

    /// Forgets settlements security has acknowledged.
    func removeSettlements(_ reservationIDs: [String]) async throws {
        _ = try await database.write { db in try SettlementRow.deleteAll(db, keys: reservationIDs) }
    }

    // MARK: - Records and conditions

    /// The record with `id`, if any.
    func image(id: String) throws -> ImageRow? {
        try database.read { db in try ImageRow.fetchOne(db, key: id) }
    }

    /// The images of `ids` that exist and that a caller may see, in one read: those `seesDirectly` accepts, and
    /// the others that a grant to `receiverID` covers at `now`.
    func visibleImages(ids: [String], receiverID: String, at now: Date, seesDirectly: (ImageRow) -> Bool) throws -> [String: ImageRow] {
        try database.read { db in
            var visible: [String: ImageRow] = [:]
            for row in try ImageRow.fetchAll(db, keys: ids) {
                let covered = try seesDirectly(row)
                    || Bool.fetchOne(db, sql: Self.grantCoversSQL, arguments: [row.id, receiverID, now]) ?? false
                if covered { visible[row.id] = row }
            }
            return visible
        }
    }

    /// Every conditions version of an image, oldest first.
    func conditionsHistory(imageID: String) throws -> [ConditionsRow] {
        try database.read { db in
            try ConditionsRow.filter(Column("image_id") == imageID).order(Column("version")).fetchAll(db)
        }
    }

    /// Records a new conditions version made by `update` from the current conditions, and makes it current.
    /// `nil` when the image does not exist.
    func addConditionsVersion(
        imageID: String,
        recordedBy: String,
        reason: String,
        at now: Date,
        update: @escaping @Sendable (ImageRow) throws -> Data
    ) async throws -> (ImageRow, ConditionsRow)? {
        try await database.write { db in
            guard var row = try ImageRow.fetchOne(db, key: imageID) else { return nil }
            let version = ConditionsRow(
                imageID: imageID,
                version: row.conditionsVersion + 1,
                conditions: try update(row),
                recordedBy: recordedBy,
                recordedAt: now,
                reason: reason
            )
            try version.insert(db)
            row.conditions = version.conditions
            row.conditionsVersion = version.version
            try row.update(db)
            return (row, version)
        }
    }

    /// A thumbnail by its key.
    func thumbnail(sha256: String) throws -> ThumbnailRow? {
        try database.read { db in try ThumbnailRow.fetchOne(db, key: sha256) }
    }

    // MARK: - Listings

    /// Current records visible to `audience` that match `query`, in (order time, ID) order after `after`.
    func listImages(audience: Audience, query: ImageQuery, after: (time: Int64, key: String)?, limit: Int) throws -> [ImageRow] {
        var (clauses, arguments) = scope(audience: audience, query: query)
        if let after {
            clauses.append("(order_time > ? OR (order_time = ? AND id > ?))")
            arguments += [after.time, after.time, after.key]
        }
        arguments.append(limit)
        let sql = "SELECT * FROM image WHERE \(clauses.joined(separator: " AND ")) ORDER BY order_time, id LIMIT ?"
        return try database.read { db in try ImageRow.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)) }
    }

    /// Studies or series of the visible current records that match `query`, each with its counts and a
    /// representative image that has a thumbnail, in UID order after `after`. The UID is the whole key, so
    /// pages stay stable while images are added to groups (a group's first time may change; its UID cannot).
    func listGroups(by column: GroupColumn, audience: Audience, query: ImageQuery, after: String?, limit: Int) throws -> [GroupSummary] {
        // Images of a group are found through the group's own index, then filtered.
        var (clauses, arguments) = scope(audience: audience, query: query)
        clauses.append("\(column.rawValue) IS NOT NULL")
        if let after {
            clauses.append("\(column.rawValue) > ?")
            arguments.append(after)
        }
        arguments.append(limit)
        let sql = """
            SELECT \(column.rawValue) AS key, min(study_uid) AS study_uid, min(patient_id) AS patient_id,
              min(patient_name) AS patient_name, group_concat(DISTINCT modality) AS modalities, min(body_part) AS body_part,
              count(DISTINCT series_uid) AS series_count, count(*) AS image_count,
              min(acquired_at) AS first_acquired_at, min(CASE WHEN thumbnail_sha256 IS NOT NULL THEN id END) AS representative
            FROM image WHERE \(clauses.joined(separator: " AND "))
            GROUP BY \(column.rawValue)
            ORDER BY key LIMIT ?
            """
        return try database.read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
                GroupSummary(
                    key: row["key"],
                    studyUID: row["study_uid"],
                    patientID: row["patient_id"],
                    patientName: row["patient_name"],
                    modalities: ((row["modalities"] as String?) ?? "").split(separator: ",").map(String.init).sorted(),
                    bodyPart: row["body_part"],
                    seriesCount: row["series_count"],
                    imageCount: row["image_count"],
                    firstAcquiredAt: row["first_acquired_at"],
                    representativeImageID: row["representative"]
                )
            }
        }
    }

    enum GroupColumn: String, Sendable {
        case study = "study_uid"
        case series = "series_uid"
    }

    /// The conditions every listing shares: current records, visible, matching the filter.
    private func scope(audience: Audience, query: ImageQuery) -> ([String], [any DatabaseValueConvertible & Sendable]) {
        var clauses = ["superseded_by IS NULL"]
        var arguments: [any DatabaseValueConvertible & Sendable] = []
        if let (visibility, visibilityArguments) = audience.sql(at: query.at, selectiveFilter: query.selective) {
            clauses.append(visibility)
            arguments += visibilityArguments
        }
        clauses += query.clauses
        arguments += query.arguments as [any DatabaseValueConvertible & Sendable]
        return (clauses, arguments)
    }

    // MARK: - Backup

    /// Copies a consistent snapshot of the whole database to a new SQLite file at `path` (SQLite's online
    /// backup: writers may go on meanwhile; the copy is the state at one instant). Returns the distinct blob
    /// digests the snapshot references.
    func snapshot(to path: String) throws -> [String] {
        let copy = try DatabaseQueue(path: path)
        try database.backup(to: copy)
        return try copy.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM image ORDER BY sha256") }
    }

    /// Replaces the whole database with the snapshot at `path`, after migrating the snapshot to this version's
    /// schema and checking it. `blobExists` must hold for every blob the snapshot references; otherwise nothing
    /// changes and the missing digests are returned. Returns the number of image records on success.
    func restore(from path: String, blobExists: (String) throws -> Bool) throws -> Result<Int, MissingBlobs> {
        let snapshot = try DatabaseQueue(path: path)
        try snapshot.write { db in
            guard try String.fetchOne(db, sql: "PRAGMA integrity_check") == "ok", try db.tableExists("image") else { throw RestoreError.corrupt }
        }
        try RegistryMigrations.migrator.migrate(snapshot)
        let digests = try snapshot.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT sha256 FROM image") }
        let missing = try digests.filter { try !blobExists($0) }
        guard missing.isEmpty else { return .failure(MissingBlobs(digests: missing)) }
        try snapshot.backup(to: database)
        return .success(try database.read { db in try ImageRow.fetchCount(db) })
    }

    struct MissingBlobs: Error {
        var digests: [String]
    }

    enum RestoreError: Error {
        case corrupt
    }

    // MARK: - Share grants

    /// Records a grant and its studies, and the notice for the receiver's inbox, in one transaction.
    func insert(_ grant: ShareGrantRow, studies: [String], notice: Notice) async throws {
        try await database.write { db in
            try grant.insert(db)
            for study in studies { try ShareStudyRow(grantID: grant.id, studyUID: study).insert(db, onConflict: .ignore) }
            try db.execute(
                sql: "INSERT INTO notice_outbox (recipient_id, entry_key, entry) VALUES (?, ?, ?)",
                arguments: [notice.recipientID, notice.entryKey, notice.entry]
            )
        }
    }

    /// The oldest notices waiting to be delivered, up to `limit`.
    func pendingNotices(limit: Int) async throws -> [Notice] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT sequence, recipient_id, entry_key, entry FROM notice_outbox ORDER BY sequence LIMIT ?", arguments: [limit]).map {
                Notice(sequence: $0["sequence"], recipientID: $0["recipient_id"], entryKey: $0["entry_key"], entry: $0["entry"])
            }
        }
    }

    /// Removes a delivered notice.
    func removeNotice(_ sequence: Int64) async throws {
        try await database.write { db in try db.execute(sql: "DELETE FROM notice_outbox WHERE sequence = ?", arguments: [sequence]) }
    }

    /// Revokes a grant `grantorID` made, at `now` (a revoked grant keeps its first revocation time).
    /// `nil` when there is no such grant by that grantor.
    func revoke(grantID: String, grantorID: String, at now: Date) async throws -> (ShareGrantRow, [String])? {
        try await database.write { db in
            guard var grant = try ShareGrantRow.fetchOne(db, key: grantID), grant.grantorID == grantorID else { return nil }
            if grant.revokedAt == nil {
                grant.revokedAt = now
                try grant.update(db)
            }
            return (grant, try scope(db, of: grant))
        }
    }

    /// Grants made by (`byGrantor`) or to a subscriber, in ID order after `after`.
    func grants(subscriberID: String, byGrantor: Bool, includeInactive: Bool, at now: Date, after: String?, limit: Int) throws -> [(ShareGrantRow, [String])] {
        try database.read { db in
            var request = ShareGrantRow.filter(Column(byGrantor ? "grantor_id" : "receiver_id") == subscriberID)
            if !includeInactive {
                request = request.filter(Column("revoked_at") == nil && (Column("expires_at") == nil || Column("expires_at") > now))
            }
            if let after { request = request.filter(Column("id") > after) }
            return try request.order(Column("id")).limit(limit).fetchAll(db).map { ($0, try scope(db, of: $0)) }
        }
    }

    /// Whether any grant to `receiverID` applies at `now`.
    func hasActiveGrants(receiverID: String, at now: Date) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(
                db,
                sql: "SELECT EXISTS (SELECT 1 FROM share_grant WHERE receiver_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?))",
                arguments: [receiverID, now]
            ) ?? false
        }
    }

    /// Whether an active grant to `receiverID` covers image `imageID` at `now` (the listing's own clause).
    /// Whether a grant to a receiver covers an image at an instant (arguments: image ID, receiver ID, instant).
    private static let grantCoversSQL = "SELECT EXISTS (SELECT 1 FROM image WHERE id = ? AND \(Audience.grantClause))"

    func grantCovers(imageID: String, receiverID: String, at now: Date) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: Self.grantCoversSQL, arguments: [imageID, receiverID, now]) ?? false
        }
    }

    /// The studies of a study-scoped grant, or the images of an image-scoped one.
    private func scope(_ db: Database, of grant: ShareGrantRow) throws -> [String] {
        if grant.imageScoped == true {
            return try String.fetchAll(db, sql: "SELECT image_id FROM share_grant_image WHERE grant_id = ? ORDER BY image_id", arguments: [grant.id])
        }
        return try String.fetchAll(db, sql: "SELECT study_uid FROM share_grant_study WHERE grant_id = ? ORDER BY study_uid", arguments: [grant.id])
    }

    /// Grants each of `receivers` sight of one image of `grantorID`'s, without a notice. Grant IDs derive from
    /// (image, receiver), so granting again changes nothing (a revoked grant stays revoked).
    func grantImage(_ imageID: String, grantorID: String, to receivers: [String], at now: Date) async throws {
        try await database.write { db in
            for receiver in receivers {
                let id = "shr_" + String(Hex.encode(SHA256.hash(data: Data("image-grant\u{0}\(imageID)\u{0}\(receiver)".utf8))).prefix(26))
                let grant = ShareGrantRow(id: id, grantorID: grantorID, receiverID: receiver, patientID: nil, expiresAt: nil, createdAt: now, revokedAt: nil, imageScoped: true)
                try grant.insert(db, onConflict: .ignore)
                try db.execute(sql: "INSERT OR IGNORE INTO share_grant_image (grant_id, image_id) VALUES (?, ?)", arguments: [id, imageID])
            }
        }
    }
}

/// An inbox entry the registry owes a subscriber (a share notice), as kept in its outbox.
struct Notice: Sendable {
    var sequence: Int64 = 0
    var recipientID: String
    var entryKey: String
    /// A serialized `InboxEntry`.
    var entry: Data
}
