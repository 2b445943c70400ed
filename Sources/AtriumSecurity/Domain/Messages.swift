import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation

/// Conversions between stored records and protobuf messages, and request validation.
extension SecurityStore.SubscriberView {
    var message: Atrium_V1_Subscriber {
        .with {
            $0.subscriberID = record.id
            $0.displayName = record.displayName
            $0.kind = kind
            $0.status = status
            $0.patientIds = patientIDs
            $0.externalID = record.externalID ?? ""
            $0.contract = contract
            $0.createdAt = .init(date: record.createdAt)
            $0.statusChangedAt = .init(date: record.statusChangedAt)
        }
    }
}

extension ApiKeyRecord {
    var message: Atrium_V1_ApiKey {
        .with {
            $0.prefix = prefix
            $0.subscriberID = subscriberID
            $0.label = label
            $0.createdAt = .init(date: createdAt)
            if let revokedAt { $0.revokedAt = .init(date: revokedAt) }
            if let expiresAt { $0.expiresAt = .init(date: expiresAt) }
        }
    }
}

extension CertificateRecord {
    var message: Atrium_V1_IssuedCertificate {
        .with {
            $0.serial = serial
            $0.subscriberID = subscriberID
            $0.notBefore = .init(date: notBefore)
            $0.notAfter = .init(date: notAfter)
            if let revokedAt { $0.revokedAt = .init(date: revokedAt) }
        }
    }
}

extension AuditRecord {
    var message: Atrium_V1_AuditEntry {
        .with {
            $0.sequence = UInt64(sequence)
            $0.time = .init(date: Date(timeIntervalSince1970: Double(timeMilliseconds) / 1000))
            $0.subscriberID = subscriberID
            $0.method = method
            $0.resourceID = resourceID
            $0.resourceOwnerID = resourceOwnerID
            $0.patientID = patientID
            $0.outcome = outcome
            $0.requestID = requestID
            $0.hash = hash
        }
    }
}

extension NotificationRecord {
    var notification: Atrium_V1_Notification {
        .with {
            $0.notificationID = id
            $0.kind = kind
            $0.message = message
            $0.createdAt = .init(date: createdAt)
        }
    }
}

/// Paging: a page size between 1 and 1000 (default 100) and an opaque token that is the last key returned.
struct Page {
    let size: Int
    let after: String?

    init(_ request: Atrium_V1_PageRequest) throws {
        guard request.pageSize <= 1000 else { throw SecurityError.invalidArgument("page.page_size must be at most 1000") }
        self.size = request.pageSize == 0 ? 100 : Int(request.pageSize)
        self.after = request.pageToken.isEmpty ? nil : request.pageToken
    }

    /// The token for the next page: the last key, when the page is full.
    func nextToken(lastKey: String?, count: Int) -> String {
        count == size ? (lastKey ?? "") : ""
    }

    /// The token as a sequence number (audit pages).
    var afterSequence: Int64 {
        get throws {
            guard let after else { return 0 }
            guard let value = Int64(after), value >= 0 else { throw SecurityError.invalidArgument("page.page_token is not one this service issued") }
            return value
        }
    }
}

/// Validation of operator input.
enum Validate {
    /// A timestamp within years 1970 to 9999 with valid nanoseconds; INVALID_ARGUMENT naming `field` otherwise.
    static func time(_ timestamp: Google_Protobuf_Timestamp, field: String) throws -> Date {
        guard (0...253_402_300_799).contains(timestamp.seconds), (0..<1_000_000_000).contains(timestamp.nanos) else {
            throw SecurityError.invalidArgument("\(field) must be between 1970 and 9999")
        }
        return timestamp.date
    }

    /// The bounds of an optional time range.
    static func range(_ range: Atrium_V1_TimeRange, field: String) throws -> (from: Date?, until: Date?) {
        (
            range.hasStart ? try time(range.start, field: "\(field).start") : nil,
            range.hasEnd ? try time(range.end, field: "\(field).end") : nil
        )
    }

    static func subscriberID(_ id: String, field: String = "subscriber_id") throws -> String {
        guard !id.isEmpty else { throw SecurityError.invalidArgument("\(field) is required") }
        guard id.utf8.count <= 64 else { throw SecurityError.invalidArgument("\(field) is longer than 64 bytes") }
        return id
    }

    static func displayName(_ name: String) throws -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...200).contains(trimmed.utf8.count) else { throw SecurityError.invalidArgument("display_name must be 1 to 200 bytes") }
        return trimmed
    }

    static func kind(_ kind: Atrium_V1_SubscriberKind) throws -> Atrium_V1_SubscriberKind {
        guard kind != .unspecified, case .some = Atrium_V1_SubscriberKind.allCases.firstIndex(of: kind) else {
            throw SecurityError.invalidArgument("kind must be one of hospital, individual, vendor, printer, operator")
        }
        return kind
    }

    static func patientIDs(_ ids: [String], kind: Atrium_V1_SubscriberKind) throws -> [String] {
        guard ids.isEmpty || kind == .individual else {
            throw SecurityError.invalidArgument("patient_ids may be linked only to individual subscribers")
        }
        guard ids.count <= 100 else { throw SecurityError.invalidArgument("at most 100 patient_ids may be linked") }
        for id in ids where id.isEmpty || id.utf8.count > 64 || id.contains(",") {
            throw SecurityError.invalidArgument("patient ID '\(id)' must be 1 to 64 bytes without commas (DICOM LO)")
        }
        return ids
    }

    /// A contract as the operator sent it, with defaults filled in: roles from the kind when none are named,
    /// and the 80% warning threshold.
    static func contract(_ input: Atrium_V1_Contract, kind: Atrium_V1_SubscriberKind) throws -> Atrium_V1_Contract {
        var contract = input
        if contract.roles.isEmpty { contract.roles = kind.defaultRoles }
        for role in contract.roles where role == .unspecified || Atrium_V1_Role.allCases.firstIndex(of: role) == nil {
            throw SecurityError.invalidArgument("contract.roles has an unknown role (\(role.rawValue))")
        }
        contract.roles = Array(Set(contract.roles)).sorted { $0.rawValue < $1.rawValue }
        if contract.roles.contains(.admin) && kind != .operator {
            throw SecurityError.invalidArgument("role 'admin' may be granted only to operator subscribers")
        }
        if contract.storageWarningPercent == 0 { contract.storageWarningPercent = 80 }
        guard contract.storageWarningPercent <= 100 else {
            throw SecurityError.invalidArgument("contract.storage_warning_percent must be 1 to 100")
        }
        guard contract.requestsPerSecond.isFinite, contract.requestsPerSecond >= 0 else {
            throw SecurityError.invalidArgument("contract.requests_per_second must be a finite number, 0 or more")
        }
        guard contract.maxMessageBytes <= 64 << 20 else {
            throw SecurityError.invalidArgument("contract.max_message_bytes must be at most 64 MiB")
        }
        let fees = contract.fees
        let prices = [
            fees.subscriptionFeeMinor, fees.managementFeeMinor, fees.storageFeePerGbMonthMinor, fees.deliveryFeePerImageMinor,
            fees.processingFeePerImageMinor, fees.processingFeePerCpuSecondMinor, fees.processingFeePerGbMinor,
        ]
        guard prices.allSatisfy({ $0 >= 0 }) else { throw SecurityError.invalidArgument("contract.fees must not be negative") }
        let charges = prices.contains { $0 > 0 } || contract.hasBudgetCapPerPeriod
        if charges {
            guard fees.currency.utf8.count == 3, fees.currency.utf8.allSatisfy({ (65...90).contains($0) }) else {
                throw SecurityError.invalidArgument("contract.fees.currency must be an ISO 4217 code such as 'EUR'")
            }
        }
        if contract.hasBudgetCapPerPeriod {
            guard contract.budgetCapPerPeriod.currency == fees.currency, contract.budgetCapPerPeriod.minorUnits >= 0 else {
                throw SecurityError.invalidArgument("contract.budget_cap_per_period must be non-negative and in the fee schedule's currency")
            }
        }
        contract.version = 0
        contract.clearEffectiveFrom()
        return contract
    }
}
