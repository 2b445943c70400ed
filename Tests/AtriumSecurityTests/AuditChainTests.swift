import AtriumAPI
import Foundation
import GRDB
import Testing

@testable import AtriumSecurity

@Suite("Audit hash chain")
struct AuditChainTests {
    private func fill(_ fixture: SecurityFixture, count: Int) throws {
        let entries = (1...count).map { index in
            SecurityStore.AuditInput(
                time: fixture.now.addingTimeInterval(Double(index)),
                subscriberID: "sub_\(index % 3)",
                method: "atrium.v1.Delivery/Fetch",
                resourceID: "img_\(index)",
                resourceOwnerID: "sub_owner",
                patientID: index % 2 == 0 ? "PAT-\(index)" : "",
                outcome: "ok",
                requestID: "req_\(index)"
            )
        }
        try fixture.store.appendAudit(Array(entries.prefix(count / 2)))
        try fixture.store.appendAudit(Array(entries.dropFirst(count / 2)))
    }

    @Test("an untouched log verifies, across appends")
    func intact() throws {
        let fixture = try SecurityFixture()
        try fill(fixture, count: 50)
        let result = try fixture.store.verifyAudit()
        #expect(result.firstBroken == nil)
        #expect(result.checked == 50)
    }

    @Test("editing one row directly in SQLite makes verification report that row")
    func editedRow() throws {
        let fixture = try SecurityFixture()
        try fill(fixture, count: 20)
        let queue = try DatabaseQueue(path: fixture.databasePath)
        // The triggers stop a plain edit...
        #expect(throws: (any Error).self) {
            try queue.write { try $0.execute(sql: "UPDATE audit SET outcome = 'PERMISSION_DENIED' WHERE sequence = 7") }
        }
        // ...so a tamperer drops them first; the chain still tells.
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER audit_no_update")
            try db.execute(sql: "UPDATE audit SET resource_id = 'img_other' WHERE sequence = 7")
        }
        let result = try fixture.store.verifyAudit()
        #expect(result.firstBroken == 7)
        #expect(result.checked == 7)
    }

    @Test("rewriting a row's hash too moves the break to the next row; deleting a row is reported as missing")
    func rewrittenAndDeleted() throws {
        let fixture = try SecurityFixture()
        try fill(fixture, count: 10)
        let queue = try DatabaseQueue(path: fixture.databasePath)
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER audit_no_update")
            try db.execute(sql: "UPDATE audit SET outcome = 'x', hash = '\(String(repeating: "ab", count: 32))' WHERE sequence = 4")
        }
        #expect(try fixture.store.verifyAudit().firstBroken == 4)
        try queue.write { db in
            try db.execute(sql: "DROP TRIGGER audit_no_delete")
            try db.execute(sql: "DELETE FROM audit WHERE sequence IN (3, 4)")
        }
        let result = try fixture.store.verifyAudit()
        #expect(result.firstBroken == 3)
        #expect(result.detail.contains("missing"))
    }

    @Test("'who saw my images' selects entries on the caller's images and its patients' images only")
    func accesses() throws {
        let fixture = try SecurityFixture()
        try fixture.store.appendAudit([
            .init(time: fixture.now, subscriberID: "sub_b", method: "m", resourceID: "img_1", resourceOwnerID: "sub_a", outcome: "ok", requestID: "1"),
            .init(time: fixture.now, subscriberID: "sub_c", method: "m", resourceID: "img_2", resourceOwnerID: "sub_c", patientID: "P1", outcome: "ok", requestID: "2"),
            .init(time: fixture.now, subscriberID: "sub_c", method: "m", resourceID: "img_3", resourceOwnerID: "sub_c", patientID: "P2", outcome: "ok", requestID: "3"),
        ])
        let owner = try fixture.store.audit(.init(ownedBy: ("sub_a", [])), after: 0, limit: 100)
        #expect(owner.map(\.resourceID) == ["img_1"])
        let patient = try fixture.store.audit(.init(ownedBy: ("sub_p", ["P1"])), after: 0, limit: 100)
        #expect(patient.map(\.resourceID) == ["img_2"])
    }

    @Test("a query by method finds entries written in the old form with a leading slash; a query by request ID finds one call's entries")
    func methodAndRequest() throws {
        let fixture = try SecurityFixture()
        try fixture.store.appendAudit([
            // Processing wrote this form before every service wrote the descriptor's fully qualified name.
            .init(time: fixture.now, subscriberID: "sub_b", method: "/atrium.v1.Processing/Run", resourceID: "img_1", outcome: "ok", requestID: "req_1"),
            .init(time: fixture.now, subscriberID: "sub_b", method: "atrium.v1.Processing/Run", outcome: "ok", requestID: "req_2"),
            .init(time: fixture.now, subscriberID: "sub_b", method: "atrium.v1.Processing/Run", resourceID: "img_1", outcome: "ok", requestID: "req_2"),
            .init(time: fixture.now, subscriberID: "sub_b", method: "atrium.v1.Delivery/Fetch", resourceID: "img_1", outcome: "ok", requestID: "req_3"),
        ])
        for query in ["atrium.v1.Processing/Run", "/atrium.v1.Processing/Run"] {
            #expect(try fixture.store.audit(.init(method: query), after: 0, limit: 100).map(\.sequence) == [1, 2, 3])
        }
        #expect(try fixture.store.audit(.init(requestID: "req_2"), after: 0, limit: 100).map(\.sequence) == [2, 3])
        #expect(try fixture.store.audit(.init(method: "atrium.v1.Processing/Run", requestID: "req_1"), after: 0, limit: 100).map(\.sequence) == [1])
        #expect(try fixture.store.verifyAudit().firstBroken == nil)
    }
}
