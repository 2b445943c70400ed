import Foundation
import GRDB

/// A row of `image`: the index record of one stored image. Queries read only this table, never blobs.
struct ImageRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "image"
    var id: String
    var registrantID: String
    var patientID: String?
    var patientName: String?
    var studyUID: String?
    var seriesUID: String?
    var sopInstanceUID: String?
    var sopClassUID: String?
    var modality: String?
    var acquiredAt: Date?
    var deviceID: String?
    var bodyPart: String?
    var comment: String?
    var rows: Int?
    var columns: Int?
    var bitsAllocated: Int?
    var frames: Int?
    var transferSyntaxUID: String?
    var sizeBytes: Int64
    var sha256: String
    var registeredAt: Date

    enum CodingKeys: String, CodingKey {
        case id, registrantID = "registrant_id", patientID = "patient_id", patientName = "patient_name",
            studyUID = "study_uid", seriesUID = "series_uid", sopInstanceUID = "sop_instance_uid",
            sopClassUID = "sop_class_uid", modality, acquiredAt = "acquired_at", deviceID = "device_id",
            bodyPart = "body_part", comment, rows, columns, bitsAllocated = "bits_allocated", frames,
            transferSyntaxUID = "transfer_syntax_uid", sizeBytes = "size_bytes", sha256, registeredAt = "registered_at"
    }
}

/// The registry database's migrations, in order. Never edit one that has landed; add a new one.
enum RegistryMigrations {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1 images") { db in
            try db.create(table: "image") { t in
                t.primaryKey("id", .text)
                t.column("registrant_id", .text).notNull().indexed()
                t.column("patient_id", .text).indexed()
                t.column("patient_name", .text)
                t.column("study_uid", .text).indexed()
                t.column("series_uid", .text).indexed()
                t.column("sop_instance_uid", .text)
                t.column("sop_class_uid", .text)
                t.column("modality", .text)
                t.column("acquired_at", .datetime)
                t.column("device_id", .text)
                t.column("body_part", .text)
                t.column("comment", .text)
                t.column("rows", .integer)
                t.column("columns", .integer)
                t.column("bits_allocated", .integer)
                t.column("frames", .integer)
                t.column("transfer_syntax_uid", .text)
                t.column("size_bytes", .integer).notNull()
                t.column("sha256", .text).notNull().indexed()
                t.column("registered_at", .datetime).notNull()
            }
        }
        // An outbox: the storage a committed image adds is owed to security's quota account. The row is written in
        // the image's own transaction and removed once security has settled the reservation, so that a failed or
        // interrupted settlement is retried, not lost.
        migrator.registerMigration("v2 settlement outbox") { db in
            try db.create(table: "settlement") { t in
                t.primaryKey("reservation_id", .text)
                t.column("subscriber_id", .text).notNull()
                t.column("committed_bytes", .integer).notNull()
                t.column("created_at", .datetime).notNull()
            }
        }
        return migrator
    }
}

/// A row of `settlement`: a reservation to commit at security with the bytes the image added.
struct SettlementRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "settlement"
    var reservationID: String
    var subscriberID: String
    var committedBytes: Int64
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case reservationID = "reservation_id", subscriberID = "subscriber_id", committedBytes = "committed_bytes", createdAt = "created_at"
    }
}
