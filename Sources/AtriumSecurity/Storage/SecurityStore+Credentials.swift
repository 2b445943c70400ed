import AtriumAPI
import AtriumCore
import Crypto
import Foundation
import GRDB
import AtriumRuntime

/// API keys, enrolment tokens and issued certificates.
extension SecurityStore {
    /// What a presented credential resolves to.
    enum CredentialLookup: Sendable {
        case valid(SubscriberView)
        /// Unknown, revoked or expired: the message says which, without naming the subscriber.
        case refused(String)
    }

    // MARK: - API keys

    /// Makes a new API key for a subscriber; returns the record and the whole key (shown once).
    func createApiKey(subscriberID: String, label: String, expiresAt: Date?, now: Date) throws -> (ApiKeyRecord, String) {
        let key = ApiKeySecret.generate()
        let salt = ApiKeySecret.makeSalt()
        let record = ApiKeyRecord(
            prefix: key.prefix,
            subscriberID: subscriberID,
            label: label,
            salt: salt,
            hash: key.hash(salt: salt),
            createdAt: now,
            expiresAt: expiresAt,
            revokedAt: nil
        )
        try database.write { db in
            try Self.requireLive(subscriberID, db: db)
            try record.insert(db)
        }
        return (record, key.text)
    }

    /// A subscriber's keys, newest first.
    func apiKeys(of subscriberID: String, includeRevoked: Bool) throws -> [ApiKeyRecord] {
        try database.read { db in
            _ = try Self.view(of: subscriberID, db: db)
            var request = ApiKeyRecord.filter(Column("subscriber_id") == subscriberID)
            if !includeRevoked { request = request.filter(Column("revoked_at") == nil) }
            return try request.order(Column("created_at").desc, Column("prefix")).fetchAll(db)
        }
    }

    /// Revokes a key by its prefix (idempotent: revoking twice keeps the first time).
    func revokeApiKey(prefix: String, now: Date) throws -> ApiKeyRecord {
        try database.write { db in
            guard var record = try ApiKeyRecord.fetchOne(db, key: prefix) else { throw SecurityError.notFound("no API key with prefix '\(prefix)'") }
            if record.revokedAt == nil {
                record.revokedAt = now
                try record.update(db)
            }
            return record
        }
    }

    /// Resolves a presented API key.
    func lookup(_ key: ApiKeySecret, now: Date) throws -> CredentialLookup {
        try database.read { db in
            guard let record = try ApiKeyRecord.fetchOne(db, key: key.prefix), key.matches(salt: record.salt, hash: record.hash) else {
                return .refused("unknown API key")
            }
            if record.revokedAt != nil { return .refused("the API key has been revoked") }
            if let expiry = record.expiresAt, expiry <= now { return .refused("the API key has expired") }
            return .valid(try Self.view(of: record.subscriberID, db: db))
        }
    }

    // MARK: - Enrolment and certificates

    /// Makes a one-time enrolment token; returns the token text (shown once; only its hash is kept).
    func createEnrollmentToken(subscriberID: String, expiresAt: Date, now: Date) throws -> String {
        let token = "ate_" + Identifier.randomBase32(count: 40)
        try database.write { db in
            try Self.requireLive(subscriberID, db: db)
            try EnrollmentTokenRecord(tokenHash: Self.tokenHash(token), subscriberID: subscriberID, createdAt: now, expiresAt: expiresAt, usedAt: nil)
                .insert(db)
        }
        return token
    }

    /// Spends an enrolment token and records the certificate `issue` makes for its subscriber, in one
    /// transaction: a token can never yield two certificates, and a failed issue leaves it unspent.
    func enroll(
        token: String,
        now: Date,
        issue: (_ subscriberID: String) throws -> CertificateRecord
    ) throws -> CertificateRecord {
        try database.write { db in
            guard var record = try EnrollmentTokenRecord.fetchOne(db, key: Self.tokenHash(token)) else {
                throw SecurityError.unauthenticated("unknown enrolment token")
            }
            guard record.usedAt == nil else { throw SecurityError.unauthenticated("the enrolment token has already been used") }
            guard record.expiresAt > now else { throw SecurityError.unauthenticated("the enrolment token has expired") }
            try Self.requireLive(record.subscriberID, db: db)
            record.usedAt = now
            try record.update(db)
            let certificate = try issue(record.subscriberID)
            try certificate.insert(db)
            return certificate
        }
    }

    /// Resolves a client certificate the gateway verified against the Atrium CA.
    func lookupCertificate(serial: String, sha256: String, subscriberID: String, now: Date) throws -> CredentialLookup {
        try database.read { db in
            guard let record = try CertificateRecord.fetchOne(db, key: serial), record.sha256 == sha256, record.subscriberID == subscriberID else {
                return .refused("the client certificate was not issued to a subscriber by Atrium")
            }
            if record.revokedAt != nil { return .refused("the client certificate has been revoked") }
            if record.notAfter <= now { return .refused("the client certificate has expired") }
            return .valid(try Self.view(of: record.subscriberID, db: db))
        }
    }

    /// Revokes a certificate by serial (idempotent).
    func revokeCertificate(serial: String, now: Date) throws -> CertificateRecord {
        try database.write { db in
            guard var record = try CertificateRecord.fetchOne(db, key: serial) else { throw SecurityError.notFound("no certificate with serial '\(serial)'") }
            if record.revokedAt == nil {
                record.revokedAt = now
                try record.update(db)
            }
            return record
        }
    }

    private static func tokenHash(_ token: String) -> Data {
        Data(SHA256.hash(data: Data(token.utf8)))
    }

    /// NOT_FOUND for an unknown subscriber, FAILED_PRECONDITION for a terminated one.
    static func requireLive(_ subscriberID: String, db: Database) throws {
        guard let record = try SubscriberRecord.fetchOne(db, key: subscriberID) else { throw unknownSubscriber(subscriberID) }
        guard record.status != Atrium_V1_SubscriberStatus.terminated.rawValue else {
            throw SecurityError.failedPrecondition("subscriber '\(subscriberID)' is terminated")
        }
    }
}
