import SwiftProtobuf
import AtriumAPI
import Foundation

/// A billing period: one calendar month in UTC, written `YYYY-MM`.
struct BillingPeriod: Sendable, Hashable, Comparable {
    let year: Int
    let month: Int

    private static let calendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    /// The period containing `date`.
    init(containing date: Date) {
        let parts = Self.calendar.dateComponents([.year, .month], from: date)
        self.year = parts.year!
        self.month = parts.month!
    }

    /// Parses `YYYY-MM`; `nil` for anything else.
    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].utf8.count == 4, parts[1].utf8.count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), (1970...9999).contains(year), (1...12).contains(month)
        else { return nil }
        self.year = year
        self.month = month
    }

    private init(year: Int, month: Int) {
        self.year = year
        self.month = month
    }

    /// `YYYY-MM`.
    var text: String {
        let month = self.month < 10 ? "0\(self.month)" : "\(self.month)"
        return "\(year)-\(month)"
    }

    /// The first instant of the period.
    var start: Date { Self.calendar.date(from: DateComponents(year: year, month: month, day: 1))! }

    /// The first instant of the next period.
    var end: Date { next.start }

    /// The following month.
    var next: BillingPeriod { month == 12 ? BillingPeriod(year: year + 1, month: 1) : BillingPeriod(year: year, month: month + 1) }

    /// The length of the period in seconds (28 to 31 days).
    var seconds: Int64 { Int64(end.timeIntervalSince(start).rounded()) }

    static func < (lhs: Self, rhs: Self) -> Bool { (lhs.year, lhs.month) < (rhs.year, rhs.month) }
}

/// Metered usage of one subscriber in one period.
struct MeteredUsage: Sendable, Equatable {
    /// Stored bytes integrated over the period, in byte-milliseconds.
    var storageByteMilliseconds: Int128 = 0
    var deliveries: Int64 = 0
    var deliveredBytes: Int64 = 0
    var processedImages: Int64 = 0
    var processedBytes: Int64 = 0
    var cpuMilliseconds: Int64 = 0
}

/// Turns usage and a fee schedule into statement lines. Every amount is an integer number of minor units;
/// each metered line is rounded once, half up, from exact integer arithmetic.
///
/// Units: a GB is 10^9 bytes; a GB-month is one GB stored for the whole calendar month of the period, so a
/// month's storage line does not depend on whether the month has 28 or 31 days.
enum Billing {
    /// The lines of a period's statement: the fixed fees, then each metered item whose unit price is not zero.
    static func lines(fees: Atrium_V1_FeeSchedule, usage: MeteredUsage, period: BillingPeriod) -> [Atrium_V1_StatementLine] {
        var lines: [Atrium_V1_StatementLine] = []
        func add(_ item: String, _ unit: String, quantity: Double, price: Int64, amount: Int128) {
            if let line = line(item, unit, quantity: quantity, price: price, amount: amount, currency: fees.currency) { lines.append(line) }
        }
        add("subscription", "period", quantity: 1, price: fees.subscriptionFeeMinor, amount: Int128(fees.subscriptionFeeMinor))
        add("management", "period", quantity: 1, price: fees.managementFeeMinor, amount: Int128(fees.managementFeeMinor))
        let gbMonthDivisor = Int128(1_000_000_000) * Int128(period.seconds) * 1000
        add(
            "storage", "GB-month",
            quantity: Double(usage.storageByteMilliseconds) / Double(gbMonthDivisor),
            price: fees.storageFeePerGbMonthMinor,
            amount: divideRoundingHalfUp(usage.storageByteMilliseconds * Int128(fees.storageFeePerGbMonthMinor), gbMonthDivisor)
        )
        lines += meteredLines(fees: fees, usage: usage)
        return lines
    }

    /// The lines for deliveries and processing alone (what a quote prices).
    static func meteredLines(fees: Atrium_V1_FeeSchedule, usage: MeteredUsage) -> [Atrium_V1_StatementLine] {
        var lines: [Atrium_V1_StatementLine] = []
        func add(_ item: String, _ unit: String, quantity: Double, price: Int64, amount: Int128) {
            if let line = line(item, unit, quantity: quantity, price: price, amount: amount, currency: fees.currency) { lines.append(line) }
        }
        add(
            "delivery", "image", quantity: Double(usage.deliveries), price: fees.deliveryFeePerImageMinor,
            amount: Int128(usage.deliveries) * Int128(fees.deliveryFeePerImageMinor)
        )
        add(
            "processing.images", "image", quantity: Double(usage.processedImages), price: fees.processingFeePerImageMinor,
            amount: Int128(usage.processedImages) * Int128(fees.processingFeePerImageMinor)
        )
        add(
            "processing.cpu", "CPU-second", quantity: Double(usage.cpuMilliseconds) / 1000, price: fees.processingFeePerCpuSecondMinor,
            amount: divideRoundingHalfUp(Int128(usage.cpuMilliseconds) * Int128(fees.processingFeePerCpuSecondMinor), 1000)
        )
        add(
            "processing.bytes", "GB", quantity: Double(usage.processedBytes) / 1e9, price: fees.processingFeePerGbMinor,
            amount: divideRoundingHalfUp(Int128(usage.processedBytes) * Int128(fees.processingFeePerGbMinor), 1_000_000_000)
        )
        return lines
    }

    /// One line, or `nil` when its unit price is zero (the contract does not charge for the item).
    private static func line(
        _ item: String,
        _ unit: String,
        quantity: Double,
        price: Int64,
        amount: Int128,
        currency: String
    ) -> Atrium_V1_StatementLine? {
        guard price != 0 else { return nil }
        return .with {
            $0.item = item
            $0.unit = unit
            $0.quantity = quantity
            $0.unitPrice = .with { $0.currency = currency; $0.minorUnits = price }
            $0.amount = .with { $0.currency = currency; $0.minorUnits = clamp(amount) }
        }
    }

    /// The sum of `lines`' amounts.
    static func total(_ lines: [Atrium_V1_StatementLine], currency: String) -> Atrium_V1_Money {
        .with {
            $0.currency = currency
            $0.minorUnits = clamp(lines.reduce(Int128(0)) { $0 + Int128($1.amount.minorUnits) })
        }
    }

    /// `numerator / denominator` rounded half away from zero; `denominator` > 0.
    static func divideRoundingHalfUp(_ numerator: Int128, _ denominator: Int128) -> Int128 {
        let (quotient, remainder) = numerator.quotientAndRemainder(dividingBy: denominator)
        let twice = remainder.magnitude * 2
        guard twice >= denominator.magnitude else { return quotient }
        return numerator < 0 ? quotient - 1 : quotient + 1
    }

    private static func clamp(_ value: Int128) -> Int64 {
        value > Int128(Int64.max) ? .max : value < Int128(Int64.min) ? .min : Int64(value)
    }
}
