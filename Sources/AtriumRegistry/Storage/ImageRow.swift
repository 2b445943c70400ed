import SwiftProtobuf
import AtriumAPI
import Foundation
import GRDB
import AtriumStorage

/// A row of `image`: the index record of one stored image. Queries read only this table, never blobs.
struct ImageRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
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
    var instanceNumber: Int?
    var slicePosition: Double?
    /// The current acquisition conditions (serialized `AcquisitionConditions`) and their version.
    var conditions: Data
    var conditionsVersion: Int
    /// The record this one replaced, and the one that replaced it (only current records are listed).
    var supersedesImageID: String?
    var supersededBy: String?
    /// Images this one was derived from, joined with spaces.
    var derivedFrom: String?
    /// The `thumbnail` row's key, when the image has one.
    var thumbnailSHA256: String?
    /// Why there is no thumbnail (no pixel data, or a syntax not decoded here): what GetThumbnail answers.
    var pixelNote: String?
    /// The order of listings: acquisition time in ms since 1970, else registration time.
    var orderTime: Int64

}

/// A row of `conditions_version`: one version of an image's acquisition conditions. Never updated.
struct ConditionsRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "conditions_version"
    var imageID: String
    var version: Int
    var conditions: Data
    var recordedBy: String
    var recordedAt: Date
    var reason: String

}

/// A row of `thumbnail`: a PNG, keyed by its SHA-256 (identical thumbnails are kept once).
struct ThumbnailRow: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "thumbnail"
    var sha256: String
    var png: Data
    var width: Int
    var height: Int
}

/// A row of `share_grant`: the grantor's images of one patient, or of the studies in `share_grant_study`, are
/// visible to the receiver until the expiry or the revocation.
struct ShareGrantRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "share_grant"
    var id: String
    var grantorID: String
    var receiverID: String
    /// The patient scope; `nil` for a study or image scope.
    var patientID: String?
    var expiresAt: Date?
    var createdAt: Date
    var revokedAt: Date?
    /// Whether the grant covers the images in `share_grant_image` (made for processing results' destinations)
    /// rather than the studies in `share_grant_study`.
    var imageScoped: Bool? = nil

}

/// A row of `share_grant_study`: one study of a study-scoped grant.
struct ShareStudyRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "share_grant_study"
    var grantID: String
    var studyUID: String

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
        // Ingest parses the object: typed, versioned conditions, thumbnails, supersession, provenance, the listing
        // order and its indexes, and share grants.
        migrator.registerMigration("v3 metadata, conditions, thumbnails, shares") { db in
            try db.alter(table: "image") { t in
                t.add(column: "instance_number", .integer)
                t.add(column: "slice_position", .double)
                t.add(column: "conditions", .blob).notNull().defaults(to: Data())
                t.add(column: "conditions_version", .integer).notNull().defaults(to: 1)
                t.add(column: "supersedes_image_id", .text)
                t.add(column: "superseded_by", .text)
                t.add(column: "derived_from", .text)
                t.add(column: "thumbnail_sha256", .text)
                t.add(column: "pixel_note", .text)
                t.add(column: "order_time", .integer).notNull().defaults(to: 0)
            }
            try db.execute(sql: "UPDATE image SET order_time = CAST(strftime('%s', coalesce(acquired_at, registered_at)) AS INTEGER) * 1000")
            // One current record per SOP instance and registrant: the idempotency key, enforced in the schema.
            try db.execute(sql: """
                CREATE UNIQUE INDEX image_current_sop ON image(registrant_id, sop_instance_uid)
                WHERE superseded_by IS NULL AND sop_instance_uid IS NOT NULL
                """)
            // Keyset listing: every filter has an index that ends in the listing order.
            try db.execute(sql: "CREATE INDEX image_order ON image(order_time, id)")
            for column in ["patient_id", "registrant_id", "study_uid", "series_uid", "modality", "device_id", "body_part"] {
                try db.execute(sql: "CREATE INDEX image_\(column)_order ON image(\(column), order_time, id)")
            }
            try db.create(table: "conditions_version") { t in
                t.column("image_id", .text).notNull().references("image")
                t.column("version", .integer).notNull()
                t.column("conditions", .blob).notNull()
                t.column("recorded_by", .text).notNull()
                t.column("recorded_at", .datetime).notNull()
                t.column("reason", .text).notNull()
                t.primaryKey(["image_id", "version"])
            }
            try db.create(table: "thumbnail") { t in
                t.primaryKey("sha256", .text)
                t.column("png", .blob).notNull()
                t.column("width", .integer).notNull()
                t.column("height", .integer).notNull()
            }
            try db.create(table: "share_grant") { t in
                t.primaryKey("id", .text)
                t.column("grantor_id", .text).notNull().indexed()
                t.column("receiver_id", .text).notNull().indexed()
                t.column("patient_id", .text)
                t.column("expires_at", .datetime)
                t.column("created_at", .datetime).notNull()
                t.column("revoked_at", .datetime)
            }
            try db.create(table: "share_grant_study") { t in
                t.column("grant_id", .text).notNull().references("share_grant")
                t.column("study_uid", .text).notNull()
                t.primaryKey(["grant_id", "study_uid"])
            }
        }
        // Share notices for receivers' inboxes, committed with the grant and sent to delivery afterwards.
        migrator.registerMigration("v4 notice outbox") { db in
            try db.create(table: "notice_outbox") { t in
                t.autoIncrementedPrimaryKey("sequence")
                t.column("recipient_id", .text).notNull()
                t.column("entry_key", .text).notNull()
                t.column("entry", .blob).notNull()
            }
        }
        // Grants scoped to single images: processing results shared with their destinations.
        migrator.registerMigration("v5 image-scoped grants") { db in
            try db.alter(table: "share_grant") { t in t.add(column: "image_scoped", .boolean) }
            try db.create(table: "share_grant_image") { t in
                t.column("grant_id", .text).notNull().references("share_grant")
                t.column("image_id", .text).notNull()
                t.primaryKey(["grant_id", "image_id"])
            }
            try db.create(index: "share_grant_image_by_image", on: "share_grant_image", columns: ["image_id"])
        }
        // Storage quota held as leases: a settlement is a draw on a lease (what it took off the lease's hold and
        // what it committed), or a release of what a lease will not use.
        migrator.registerMigration("v6 storage leases") { db in
            try db.alter(table: "settlement") { t in
                t.add(column: "lease_id", .text)
                t.add(column: "drawn_bytes", .integer).notNull().defaults(to: 0)
                t.add(column: "commits", .boolean).notNull().defaults(to: true)
            }
        }
        return migrator
    }
}

/// A row of `settlement`: what security is owed. A committed image's draw on a storage lease (the bytes it took
/// off the lease and the bytes it added), or a release of lease bytes no upload will use (`commits` false).
/// Rows from before leases name a reservation of their own and no lease.
struct SettlementRow: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "settlement"
    /// The draw's ID (settling is idempotent by it).
    var reservationID: String
    var subscriberID: String
    var committedBytes: Int64
    var createdAt: Date
    var leaseID: String?
    var drawnBytes: Int64
    var commits: Bool


    /// What security is sent for this row.
    var request: Atrium_V1_SettleReservationRequest {
        .with {
            $0.reservationID = reservationID
            $0.subscriberID = subscriberID
            $0.commit = commits
            $0.committedBytes = UInt64(committedBytes)
            $0.leaseID = leaseID ?? ""
            $0.drawnBytes = UInt64(drawnBytes)
        }
    }
}
