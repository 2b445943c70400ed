import SwiftProtobuf
import AtriumAPI
import Foundation
import AtriumRuntime

/// Usage reports, statements, quotes and the budget cap.
extension SecurityService {
    /// Storage now and metered totals of the current period.
    func usage(of subscriberID: String, requestID: String) throws -> Atrium_V1_Usage {
        let now = self.now()
        let period = BillingPeriod(containing: now)
        let (state, metered) = try guarded(requestID) { try store.usage(of: subscriberID, period: period, now: now) }
        return Self.usageMessage(subscriberID: subscriberID, state: state, metered: metered, period: period)
    }

    static func usageMessage(
        subscriberID: String,
        state: SecurityStore.StorageState,
        metered: MeteredUsage = MeteredUsage(),
        period: BillingPeriod
    ) -> Atrium_V1_Usage {
        .with {
            $0.subscriberID = subscriberID
            $0.storageQuotaBytes = UInt64(state.quotaBytes)
            $0.storageUsedBytes = UInt64(state.usedBytes)
            $0.storageReservedBytes = UInt64(state.reservedBytes)
            $0.storageWarning = state.warning
            $0.period = period.text
            $0.storedGbMonths = Double(metered.storageByteMilliseconds) / (1e9 * Double(period.seconds) * 1000)
            $0.deliveries = UInt64(metered.deliveries)
            $0.deliveredBytes = UInt64(metered.deliveredBytes)
            $0.processedImages = UInt64(metered.processedImages)
            $0.processingCpuSeconds = Double(metered.cpuMilliseconds) / 1000
            $0.processedBytes = UInt64(metered.processedBytes)
        }
    }

    /// The bill of `periodText` (`YYYY-MM`): fixed fees for a period the contract covered, plus metered usage,
    /// priced with the contract version in force at the end of the period (or now, for the current one).
    func statement(of subscriberID: String, period periodText: String, requestID: String) throws -> Atrium_V1_Statement {
        guard let period = BillingPeriod(periodText) else {
            throw SecurityError.invalidArgument("period must be a month written YYYY-MM, e.g. 2026-11")
        }
        let now = self.now()
        guard period.start <= now else { throw SecurityError.invalidArgument("period \(period.text) has not started") }
        return try guarded(requestID) {
            let subscriber = try store.subscriber(subscriberID)
            let final = period.end <= now
            let contract = try store.contract(of: subscriberID, at: final ? period.end.addingTimeInterval(-0.001) : now)
            let (_, metered) = try store.usage(of: subscriberID, period: period, now: min(now, period.end))
            var lines = Billing.lines(fees: contract.fees, usage: metered, period: period)
            let ended = subscriber.status == .terminated ? subscriber.record.statusChangedAt : nil
            let covered = subscriber.record.createdAt < period.end && (ended.map { $0 >= period.start } ?? true)
            if !covered { lines.removeAll { $0.unit == "period" } }
            return .with {
                $0.subscriberID = subscriberID
                $0.period = period.text
                $0.lines = lines
                $0.total = Billing.total(lines, currency: contract.fees.currency)
                $0.final = final
            }
        }
    }

    /// What `request` would cost, and whether it would pass the budget cap.
    func quote(for subscriberID: String, _ request: Atrium_V1_QuoteRequest, requestID: String) throws -> Atrium_V1_QuoteResponse {
        var usage = MeteredUsage()
        switch request.request {
        case .delivery(let delivery):
            usage.deliveries = Int64(delivery.imageCount)
            usage.deliveredBytes = Int64(clamping: delivery.totalBytes)
        case .processing(let processing):
            guard processing.estimatedCpuSeconds.isFinite, processing.estimatedCpuSeconds >= 0 else {
                throw SecurityError.invalidArgument("processing.estimated_cpu_seconds must be a finite number, 0 or more")
            }
            usage.processedImages = Int64(processing.imageCount)
            usage.processedBytes = Int64(clamping: processing.totalBytes)
            usage.cpuMilliseconds = Int64((min(processing.estimatedCpuSeconds, 1e12) * 1000).rounded())
        case nil:
            throw SecurityError.invalidArgument("request must be a delivery or a processing quote")
        }
        let contract = try guarded(requestID) { try store.subscriber(subscriberID).contract }
        let lines = Billing.meteredLines(fees: contract.fees, usage: usage)
        let fee = Billing.total(lines, currency: contract.fees.currency)
        var exceeds = false
        if contract.hasBudgetCapPerPeriod {
            let spent = try statement(of: subscriberID, period: BillingPeriod(containing: now()).text, requestID: requestID).total.minorUnits
            exceeds = spent.addingReportingOverflow(fee.minorUnits).partialValue > contract.budgetCapPerPeriod.minorUnits
        }
        return .with {
            $0.fee = fee
            $0.lines = lines
            $0.exceedsBudget = exceeds
            $0.budgetCapped = contract.hasBudgetCapPerPeriod
        }
    }
}
