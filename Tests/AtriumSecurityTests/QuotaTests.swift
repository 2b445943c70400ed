import SwiftProtobuf
import AtriumAPI
import Foundation
import GRPCCore
import Testing

@testable import AtriumSecurity

@Suite("Storage quota and notifications")
struct QuotaTests {
    @Test("past the quota is RESOURCE_EXHAUSTED with the figures; used equals what was committed; 80% warns once")
    func quota() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        let store = fixture.store
        for (index, bytes) in [300, 300, 250].enumerated() {
            _ = try store.reserve(subscriberID: id, bytes: Int64(bytes), reservationID: "r\(index)", now: fixture.now)
            _ = try store.settle(reservationID: "r\(index)", commit: true, committedBytes: Int64(bytes), now: fixture.now)
        }
        do {
            _ = try store.reserve(subscriberID: id, bytes: 200, reservationID: "r9", now: fixture.now)
            Issue.record("a reservation past the quota was accepted")
        } catch let error as SecurityError {
            #expect(error.rpcErrorCode == .resourceExhausted)
            #expect(error.rpcErrorMessage.contains("850 bytes of the 1000-byte quota"))
        }
        // A released reservation frees its bytes; a retried settle changes nothing.
        _ = try store.reserve(subscriberID: id, bytes: 100, reservationID: "r10", now: fixture.now)
        let released = try store.settle(reservationID: "r10", commit: false, committedBytes: 0, now: fixture.now)
        #expect(released.state.usedBytes == 850 && released.state.reservedBytes == 0)
        #expect(try store.settle(reservationID: "r10", commit: true, committedBytes: 100, now: fixture.now).state.usedBytes == 850)
        let warnings = try store.notifications(of: id, before: nil, limit: 10).filter { $0.record.kind == "storage.warning" }
        #expect(warnings.count == 1)
    }

    @Test("a settlement that names its subscriber counts even when its reservation was lost in a restart, once")
    func settlementAfterRestart() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        _ = try fixture.store.reserve(subscriberID: id, bytes: 400, reservationID: "r", now: fixture.now)
        let restarted = try SecurityStore(path: fixture.databasePath)
        #expect(try restarted.storageState(of: id, now: fixture.now).reservedBytes == 0)
        #expect(throws: SecurityError.self) { try restarted.settle(reservationID: "r", commit: true, committedBytes: 400, now: fixture.now) }
        let batch = [SecurityStore.Settlement(reservationID: "r", commit: true, committedBytes: 400, subscriberID: id)]
        #expect(try restarted.settle(batch, now: fixture.now).applied == 1)
        #expect(try restarted.settle(batch, now: fixture.now).applied == 0)
        #expect(try restarted.storageState(of: id, now: fixture.now).usedBytes == 400)
    }

    @Test("an unsettled reservation stops holding bytes when it expires")
    func expiry() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        _ = try fixture.store.reserve(subscriberID: id, bytes: 900, reservationID: "abandoned", now: fixture.now)
        #expect(throws: SecurityError.self) { try fixture.store.reserve(subscriberID: id, bytes: 200, reservationID: "x", now: fixture.now) }
        fixture.now = fixture.now.addingTimeInterval(SecurityStore.reservationLifetime + 1)
        _ = try fixture.store.reserve(subscriberID: id, bytes: 200, reservationID: "y", now: fixture.now)
    }
}

@Suite("Extreme inputs never trap")
struct ExtremeInputTests {
    @Test("a quota near UInt64.max and an upload near Int64.max are arithmetic, not a crash")
    func hugeQuota() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = .max })
        let state = try fixture.store.reserve(subscriberID: id, bytes: Int64.max - 1, reservationID: "huge", now: fixture.now)
        #expect(state.reservedBytes == Int64.max - 1)
        #expect(throws: SecurityError.self) { try fixture.store.reserve(subscriberID: id, bytes: 10, reservationID: "more", now: fixture.now) }
    }

    @Test("timestamps outside 1970–9999 are INVALID_ARGUMENT, and the store clamps rather than traps", arguments: [Int64.max, Int64.min, -1, 253_402_300_800])
    func timestamps(seconds: Int64) throws {
        #expect(throws: SecurityError.self) { try Validate.time(.with { $0.seconds = seconds }, field: "t") }
        _ = SecurityStore.milliseconds(Date(timeIntervalSince1970: Double(seconds)))
    }
}
