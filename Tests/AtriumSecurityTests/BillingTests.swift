import SwiftProtobuf
import AtriumAPI
import Foundation
import Testing

@testable import AtriumSecurity

@Suite("Statements and quotes")
struct BillingTests {
    /// One scripted month, November 2026 (30 days), priced by hand:
    ///
    /// | item | quantity | unit price | amount |
    /// |---|---|---|---|
    /// | subscription | 1 period | 5000 | 5000 |
    /// | management | 1 period | 1500 | 1500 |
    /// | storage | 2 GB × 15 days + 3 GB × 15 days = 2.5 GB-month | 200 | 500 |
    /// | delivery | 7 images (one event sent twice) | 3 | 21 |
    /// | processing.images | 3 + 1 = 4 | 10 | 40 |
    /// | processing.cpu | 12.5 + 0.7 = 13.2 CPU-seconds | 50 | 660 |
    /// | processing.bytes | 1.5 + 0.25 = 1.75 GB | 100 | 175 |
    /// | total | | | 7896 |
    @Test("a scripted month's statement matches the hand-computed bill to the minor unit")
    func scriptedMonth() throws {
        let fixture = try SecurityFixture(now: utc("2026-10-20"))
        let id = try fixture.subscriber(
            contract: .with {
                $0.storageQuotaBytes = 10_000_000_000
                $0.fees = .with {
                    $0.currency = "EUR"
                    $0.subscriptionFeeMinor = 5000
                    $0.managementFeeMinor = 1500
                    $0.storageFeePerGbMonthMinor = 200
                    $0.deliveryFeePerImageMinor = 3
                    $0.processingFeePerImageMinor = 10
                    $0.processingFeePerCpuSecondMinor = 50
                    $0.processingFeePerGbMinor = 100
                }
            }
        )
        let store = fixture.store
        fixture.now = utc("2026-11-01")
        _ = try store.reserve(subscriberID: id, bytes: 2_000_000_000, reservationID: "r1", now: fixture.now)
        _ = try store.settle(reservationID: "r1", commit: true, committedBytes: 2_000_000_000, now: fixture.now)
        fixture.now = utc("2026-11-16")
        _ = try store.reserve(subscriberID: id, bytes: 1_000_000_000, reservationID: "r2", now: fixture.now)
        _ = try store.settle(reservationID: "r2", commit: true, committedBytes: 1_000_000_000, now: fixture.now)
        var events = (1...7).map { UsageEventRecord(eventID: "d\($0)", subscriberID: id, time: utc("2026-11-10"), deliveries: 1, deliveredBytes: 1000) }
        events.append(events[0])
        events.append(.init(eventID: "p1", subscriberID: id, time: utc("2026-11-20"), processedImages: 3, processedBytes: 1_500_000_000, cpuMilliseconds: 12_500))
        events.append(.init(eventID: "p2", subscriberID: id, time: utc("2026-11-29"), processedImages: 1, processedBytes: 250_000_000, cpuMilliseconds: 700))
        #expect(try store.record(events, now: fixture.now) == 9)
        #expect(try store.record(events, now: fixture.now) == 0, "every event is counted once, however often it is sent")

        fixture.now = utc("2026-12-05")
        let statement = try fixture.service.statement(of: id, period: "2026-11", requestID: "test")
        let amounts = Dictionary(uniqueKeysWithValues: statement.lines.map { ($0.item, $0.amount.minorUnits) })
        #expect(amounts == [
            "subscription": 5000, "management": 1500, "storage": 500, "delivery": 21,
            "processing.images": 40, "processing.cpu": 660, "processing.bytes": 175,
        ])
        #expect(statement.total == .with { $0.currency = "EUR"; $0.minorUnits = 7896 })
        #expect(statement.final)
        let storage = try #require(statement.lines.first { $0.item == "storage" })
        #expect(abs(storage.quantity - 2.5) < 1e-9)

        // October: the subscriber existed, nothing was stored or used yet.
        let october = try fixture.service.statement(of: id, period: "2026-10", requestID: "test")
        #expect(october.total.minorUnits == 6500)
        // December so far: 3 GB for 4 days of 31.
        let december = try fixture.service.statement(of: id, period: "2026-12", requestID: "test")
        #expect(!december.final)
        let decemberStorage = try #require(december.lines.first { $0.item == "storage" }).amount.minorUnits
        #expect(decemberStorage == Int64(2400.0 / 31.0 + 0.5), "3 GB × 200 × 4/31 rounds to 77")
    }

    @Test("rounding is half up and exact, on integers", arguments: [
        (Int128(5), Int128(2), Int128(3)), (7, 2, 4), (4, 3, 1), (5, 3, 2), (0, 7, 0), (1_000_000_000_000_000_000, 3, 333_333_333_333_333_333),
    ])
    func rounding(numerator: Int128, denominator: Int128, expected: Int128) {
        #expect(Billing.divideRoundingHalfUp(numerator, denominator) == expected)
    }

    @Test("a quote prices a request before it runs, and flags one past the budget cap")
    func quoteAndBudget() throws {
        let fixture = try SecurityFixture(now: utc("2026-11-02"))
        let id = try fixture.subscriber(
            contract: .with {
                $0.fees = .with { $0.currency = "EUR"; $0.subscriptionFeeMinor = 900; $0.deliveryFeePerImageMinor = 4 }
                $0.budgetCapPerPeriod = .with { $0.currency = "EUR"; $0.minorUnits = 1000 }
            }
        )
        let quote = try fixture.service.quote(for: id, .with { $0.delivery = .with { $0.imageCount = 25 } }, requestID: "t")
        #expect(quote.fee.minorUnits == 100)
        #expect(!quote.exceedsBudget, "900 already due + 100 = the cap, not past it")
        let over = try fixture.service.quote(for: id, .with { $0.delivery = .with { $0.imageCount = 26 } }, requestID: "t")
        #expect(over.exceedsBudget)
    }

    @Test("malformed periods and future periods are refused with INVALID_ARGUMENT", arguments: ["2026-13", "26-11", "2026/11", "", "2027-01"])
    func badPeriods(period: String) throws {
        let fixture = try SecurityFixture(now: utc("2026-11-02"))
        let id = try fixture.subscriber()
        #expect(throws: SecurityError.self) { try fixture.service.statement(of: id, period: period, requestID: "t") }
    }
}
