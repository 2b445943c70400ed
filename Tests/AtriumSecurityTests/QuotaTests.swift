import SwiftProtobuf
import AtriumAPI
import Foundation
import GRPCCore
import Testing

@testable import AtriumSecurity
import AtriumRuntime

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

    @Test("a lease holds its bytes until draws settle them: each draw once, committed bytes become used, a release frees the rest")
    func leaseDraws() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        let store = fixture.store
        _ = try store.reserve(subscriberID: id, bytes: 600, reservationID: "lease", lifetime: 600, now: fixture.now)
        // The lease counts whole against the quota: 500 more do not fit.
        #expect(throws: SecurityError.self) { try store.reserve(subscriberID: id, bytes: 500, reservationID: "other", now: fixture.now) }
        func draw(_ id: String, drawn: Int64, committed: Int64, commit: Bool = true, subscriber: String) -> SecurityStore.Settlement {
            SecurityStore.Settlement(reservationID: id, commit: commit, committedBytes: committed, subscriberID: subscriber, leaseID: "lease", drawnBytes: drawn)
        }
        // Two uploads of 200 (the second deduplicated: it drew 200 and stored nothing new), in one batch.
        let batch = [draw("d1", drawn: 200, committed: 200, subscriber: id), draw("d2", drawn: 200, committed: 0, subscriber: id)]
        #expect(try store.settle(batch, now: fixture.now).applied == 2)
        var state = try store.storageState(of: id, now: fixture.now)
        #expect(state.usedBytes == 200 && state.reservedBytes == 200)
        // Replayed (a lost response): nothing changes.
        #expect(try store.settle(batch, now: fixture.now).applied == 0)
        state = try store.storageState(of: id, now: fixture.now)
        #expect(state.usedBytes == 200 && state.reservedBytes == 200)
        // What the lease will not use is released; then the quota holds 800 more.
        _ = try store.settle(draw("release", drawn: 200, committed: 0, commit: false, subscriber: id), now: fixture.now)
        state = try store.storageState(of: id, now: fixture.now)
        #expect(state.usedBytes == 200 && state.reservedBytes == 0)
        _ = try store.reserve(subscriberID: id, bytes: 800, reservationID: "next", now: fixture.now)
        // A draw cannot commit more than it drew, nor be settled for another subscriber's lease.
        #expect(throws: SecurityError.self) { try store.settle([draw("d3", drawn: 10, committed: 20, subscriber: id)], now: fixture.now) }
        let stranger = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        _ = try store.reserve(subscriberID: stranger, bytes: 100, reservationID: "lease2", now: fixture.now)
        let foreign = SecurityStore.Settlement(reservationID: "d4", commit: true, committedBytes: 10, subscriberID: id, leaseID: "lease2", drawnBytes: 10)
        #expect(throws: SecurityError.self) { try store.settle([foreign], now: fixture.now) }
    }

    @Test("a lease's hold ends after the seconds it was asked for")
    func leaseHoldSeconds() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(contract: .with { $0.storageQuotaBytes = 1000 })
        _ = try fixture.store.reserve(subscriberID: id, bytes: 900, reservationID: "lease", lifetime: 600, now: fixture.now)
        fixture.now = fixture.now.addingTimeInterval(601)
        #expect(try fixture.store.storageState(of: id, now: fixture.now).reservedBytes == 0)
    }
}
