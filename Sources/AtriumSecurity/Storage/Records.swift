import Foundation
import GRDB
import AtriumStorage

/// A row of `subscriber`.
struct SubscriberRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "subscriber"
    var id: String
    var displayName: String
    /// `Atrium_V1_SubscriberKind` raw value.
    var kind: Int
    /// `Atrium_V1_SubscriberStatus` raw value.
    var status: Int
    var externalID: String?
    var createdAt: Date
    var statusChangedAt: Date

}

/// A row of `contract`: one row per version; the highest version is in force.
struct ContractRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "contract"
    var subscriberID: String
    var version: Int
    /// `Atrium_V1_Role` raw values, comma-separated and sorted (`1,2` is register and receive).
    var roles: String
    /// The whole `Atrium_V1_Contract` message, binary protobuf, for the terms later issues enforce.
    var terms: Data
    var effectiveFrom: Date

}

/// A row of `api_key`: never the secret, only its salted hash.
struct ApiKeyRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "api_key"
    var prefix: String
    var subscriberID: String
    var label: String
    var salt: Data
    var hash: Data
    var createdAt: Date
    var expiresAt: Date?
    var revokedAt: Date?

}

/// A row of `subscriber_patient`: an individual subscriber linked to a patient ID.
struct SubscriberPatientRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "subscriber_patient"
    var subscriberID: String
    var patientID: String

}

/// A row of `enrollment_token`: only the SHA-256 of the token is kept.
struct EnrollmentTokenRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "enrollment_token"
    var tokenHash: Data
    var subscriberID: String
    var createdAt: Date
    var expiresAt: Date
    var usedAt: Date?

}

/// A row of `certificate`: a client certificate the Atrium CA issued at enrolment.
struct CertificateRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "certificate"
    /// Lower-case hex serial number.
    var serial: String
    var subscriberID: String
    /// Lower-case hex SHA-256 of the DER certificate.
    var sha256: String
    var notBefore: Date
    var notAfter: Date
    var revokedAt: Date?

}

/// A row of `storage_account`: committed bytes now.
struct StorageAccountRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "storage_account"
    var subscriberID: String
    var usedBytes: Int64
    var lastChangeAt: Date
    var warning: Bool

}

/// A row of `storage_reservation`: bytes held for an upload in progress.
struct StorageReservationRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "storage_reservation"
    var id: String
    var subscriberID: String
    var bytes: Int64
    var expiresAt: Date
    var settledAt: Date?

}

/// A row of `storage_period`: stored bytes integrated over one calendar month.
struct StoragePeriodRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "storage_period"
    var subscriberID: String
    var period: String
    var gigaByteMilliseconds: Int64
    var remainderByteMilliseconds: Int64

    /// Columns named by abbreviation (see ``SnakeCaseColumns``).
    static let columnRenames = ["gigaByteMilliseconds": "giga_byte_ms", "remainderByteMilliseconds": "remainder_byte_ms"]

    /// The integral in byte-milliseconds.
    var byteMilliseconds: Int128 { Int128(gigaByteMilliseconds) * 1_000_000_000 + Int128(remainderByteMilliseconds) }

    /// Adds byte-milliseconds, carrying whole units of 10^9.
    mutating func add(byteMilliseconds: Int128) {
        let total = self.byteMilliseconds + byteMilliseconds
        gigaByteMilliseconds = Int64(total / 1_000_000_000)
        remainderByteMilliseconds = Int64(total % 1_000_000_000)
    }
}

/// A row of `usage_event`: one metered event, kept once per event ID.
struct UsageEventRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "usage_event"
    var eventID: String
    var subscriberID: String
    var period: String
    var time: Date
    var storedBytesDelta: Int64 = 0
    var deliveries: Int64 = 0
    var deliveredBytes: Int64 = 0
    var processedImages: Int64 = 0
    var processedBytes: Int64 = 0
    var cpuMilliseconds: Int64 = 0

}

extension UsageEventRecord {
    /// An event, filed under the billing period that contains `time`.
    init(
        eventID: String,
        subscriberID: String,
        time: Date,
        storedBytesDelta: Int64 = 0,
        deliveries: Int64 = 0,
        deliveredBytes: Int64 = 0,
        processedImages: Int64 = 0,
        processedBytes: Int64 = 0,
        cpuMilliseconds: Int64 = 0
    ) {
        self.init(
            eventID: eventID, subscriberID: subscriberID, period: BillingPeriod(containing: time).text, time: time,
            storedBytesDelta: storedBytesDelta, deliveries: deliveries, deliveredBytes: deliveredBytes,
            processedImages: processedImages, processedBytes: processedBytes, cpuMilliseconds: cpuMilliseconds
        )
    }
}

/// A row of `notification`.
struct NotificationRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "notification"
    var id: String
    var subscriberID: String
    var kind: String
    var message: String
    var createdAt: Date

}

/// A row of `audit`.
struct AuditRecord: Codable, SnakeCaseColumns, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "audit"
    var sequence: Int64
    var timeMilliseconds: Int64
    var subscriberID: String
    var method: String
    var resourceID: String
    var resourceOwnerID: String
    var patientID: String
    var outcome: String
    var requestID: String
    var hash: String

    /// Columns named by abbreviation (see ``SnakeCaseColumns``).
    static let columnRenames = ["timeMilliseconds": "time_ms"]
}
