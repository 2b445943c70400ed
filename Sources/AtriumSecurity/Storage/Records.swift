import Foundation
import GRDB

/// A row of `subscriber`.
struct SubscriberRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
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

    enum CodingKeys: String, CodingKey {
        case id, displayName = "display_name", kind, status, externalID = "external_id", createdAt = "created_at",
            statusChangedAt = "status_changed_at"
    }
}

/// A row of `contract`: one row per version; the highest version is in force.
struct ContractRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "contract"
    var subscriberID: String
    var version: Int
    /// `Atrium_V1_Role` raw values, comma-separated and sorted (`1,2` is register and receive).
    var roles: String
    /// The whole `Atrium_V1_Contract` message, binary protobuf, for the terms later issues enforce.
    var terms: Data
    var effectiveFrom: Date

    enum CodingKeys: String, CodingKey {
        case subscriberID = "subscriber_id", version, roles, terms, effectiveFrom = "effective_from"
    }
}

/// A row of `api_key`: never the secret, only its salted hash.
struct ApiKeyRecord: Codable, FetchableRecord, PersistableRecord, Sendable {
    static let databaseTableName = "api_key"
    var prefix: String
    var subscriberID: String
    var label: String
    var salt: Data
    var hash: Data
    var createdAt: Date
    var expiresAt: Date?
    var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case prefix, subscriberID = "subscriber_id", label, salt, hash, createdAt = "created_at", expiresAt = "expires_at",
            revokedAt = "revoked_at"
    }
}
