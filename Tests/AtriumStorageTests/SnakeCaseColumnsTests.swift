import AtriumStorage
import Foundation
import GRDB
import Testing

@Suite("Records map properties to snake-case columns, acronyms whole")
struct SnakeCaseColumnsTests {
    private struct Row: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord {
        static let databaseTableName = "row"
        static let columnRenames = ["index": "idx"]
        var registrantID: String
        var sopInstanceUID: String
        var thumbnailSHA256: String?
        var inputImageIDs: String
        var bitsAllocated: Int
        var index: Int
    }

    @Test("both directions, for the names the records use")
    func names() {
        let pairs = [
            ("registrantID", "registrant_id"), ("sopInstanceUID", "sop_instance_uid"), ("thumbnailSHA256", "thumbnail_sha256"),
            ("inputImageIDs", "input_image_ids"), ("sha256", "sha256"), ("id", "id"), ("bitsAllocated", "bits_allocated"),
            ("studyUIDs", "study_uids"), ("png", "png"),
        ]
        for (property, column) in pairs {
            #expect(SnakeCase.column(property) == column)
            #expect(SnakeCase.property(column) == property)
        }
    }

    @Test("a record writes and reads its columns through SQLite, renames included")
    func roundTrip() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE row (registrant_id TEXT, sop_instance_uid TEXT, thumbnail_sha256 TEXT, input_image_ids TEXT,
                bits_allocated INTEGER, idx INTEGER)
                """)
            try Row(registrantID: "sub-1", sopInstanceUID: "1.2.3", thumbnailSHA256: nil, inputImageIDs: "a b", bitsAllocated: 16, index: 7).insert(db)
            let raw = try #require(try GRDB.Row.fetchOne(db, sql: "SELECT registrant_id, sop_instance_uid, idx FROM row"))
            #expect(raw["registrant_id"] as String == "sub-1")
            #expect(raw["idx"] as Int == 7)
            let read = try #require(try Row.fetchOne(db))
            #expect(read.sopInstanceUID == "1.2.3" && read.inputImageIDs == "a b" && read.bitsAllocated == 16 && read.index == 7)
            #expect(read.thumbnailSHA256 == nil)
        }
    }
}
