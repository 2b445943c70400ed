import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
public import AtriumRuntime
public import Foundation
public import GRPCCore
public import Logging
import AtriumTransport

/// The security service's settings.
///
/// Keys (besides the runtime's):
/// - `ATRIUM_AUTH_CACHE_TTL_MS`: how long the gateway may cache a decision (default 5000). Revocation takes
///   effect within this window.
/// - `ATRIUM_ENROLLMENT_CA_CERT`, `ATRIUM_ENROLLMENT_CA_KEY` (secret): the CA that signs subscriber
///   certificates at enrolment (default: the PKI directory's `ca.pem` and `ca.key`). Without the key,
///   `Enroll` answers FAILED_PRECONDITION.
/// - `ATRIUM_CLIENT_CERT_DAYS`: how long an enrolled certificate is valid (default 365).
public struct SecurityConfiguration: Sendable {
    /// The SQLite file.
    public var databasePath: String
    /// The TTL handed to the gateway with every decision.
    public var decisionTTLMilliseconds: UInt32
    /// The enrolment CA's certificate and key files, if enrolment is enabled.
    public var enrollmentCA: (certificatePath: String, keyPath: String)?
    /// Validity of enrolled certificates.
    public var clientCertificateValidity: Duration

    /// Explicit settings.
    public init(
        databasePath: String,
        decisionTTLMilliseconds: UInt32 = 5000,
        enrollmentCA: (certificatePath: String, keyPath: String)? = nil,
        clientCertificateValidity: Duration = .seconds(365 * 86_400)
    ) {
        self.databasePath = databasePath
        self.decisionTTLMilliseconds = decisionTTLMilliseconds
        self.enrollmentCA = enrollmentCA
        self.clientCertificateValidity = clientCertificateValidity
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = Self.databasePath(dataDirectory: runtime.dataDirectory)
        self.decisionTTLMilliseconds = UInt32(try values.int("ATRIUM_AUTH_CACHE_TTL_MS", default: 5000, range: 0...60_000))
        let pki = URL(fileURLWithPath: runtime.tls.caPath).deletingLastPathComponent().path
        let certificate = values.string("ATRIUM_ENROLLMENT_CA_CERT", default: runtime.tls.caPath)
        let key = values.string("ATRIUM_ENROLLMENT_CA_KEY", default: "\(pki)/ca.key")
        self.enrollmentCA = FileManager.default.isReadableFile(atPath: key) ? (certificate, key) : nil
        let days = try values.int("ATRIUM_CLIENT_CERT_DAYS", default: 365, range: 1...3650)
        self.clientCertificateValidity = .seconds(days * 86_400)
    }

    /// Where the database lives under a data directory.
    public static func databasePath(dataDirectory: String) -> String {
        "\(dataDirectory)/security/security.sqlite"
    }
}

/// The security service: subscribers and contracts, credentials, the authorization decision the gateway
/// enforces, storage quotas, metering and statements, and the audit log.
///
/// The RPC conformances are in `SecurityService+RPC.swift`; each handler calls one method here.
public struct SecurityService: Sendable {
    let store: SecurityStore
    let configuration: SecurityConfiguration
    let enrollment: EnrollmentAuthority?
    let logger: Logger
    let now: @Sendable () -> Date

    /// Opens the database and, when configured, the enrolment CA.
    public init(configuration: SecurityConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.store = try SecurityStore(path: configuration.databasePath)
        self.configuration = configuration
        if let ca = configuration.enrollmentCA {
            self.enrollment = try EnrollmentAuthority(certificatePath: ca.certificatePath, keyPath: ca.keyPath, validity: configuration.clientCertificateValidity)
        } else {
            self.enrollment = nil
        }
        self.logger = logger
        self.now = now
    }

    /// Every RPC service the security process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [InternalSecurity(service: self), AdminSecurity(service: self), AccountSecurity(service: self)]
    }

    /// `SecurityInternal` alone (the gateway benchmark serves it next to its own stand-in backend).
    public var internalService: any RegistrableRPCService { InternalSecurity(service: self) }

    /// Creates the first operator and its API key if the database has no operator yet.
    ///
    /// - Returns: the new operator's ID and its API key (to be shown once), or `nil` when one already exists.
    public static func bootstrapOperator(databasePath: String, now: Date = Date()) throws -> (subscriberID: String, apiKey: String)? {
        let store = try SecurityStore(path: databasePath)
        guard try !store.hasOperator() else { return nil }
        let subscriber = try store.createSubscriber(
            displayName: "Operator",
            kind: .operator,
            contract: try Validate.contract(.with { $0.storageQuotaBytes = 1 << 40 }, kind: .operator),
            now: now
        )
        let (_, key) = try store.createApiKey(subscriberID: subscriber.record.id, label: "bootstrap", expiresAt: nil, now: now)
        try store.appendAudit([
            .init(time: now, subscriberID: subscriber.record.id, method: "atrium bootstrap", resourceID: subscriber.record.id, outcome: "ok", requestID: "")
        ])
        return (subscriber.record.id, key)
    }

    /// Creates a subscriber with an API key, offline (the `atrium security add-subscriber` recovery command).
    public static func createSubscriber(
        databasePath: String,
        displayName: String,
        kind: Atrium_V1_SubscriberKind,
        contract: Atrium_V1_Contract,
        now: Date = Date()
    ) throws -> (subscriberID: String, apiKey: String) {
        let store = try SecurityStore(path: databasePath)
        let subscriber = try store.createSubscriber(
            displayName: try Validate.displayName(displayName),
            kind: try Validate.kind(kind),
            contract: try Validate.contract(contract, kind: kind),
            now: now
        )
        let (_, key) = try store.createApiKey(subscriberID: subscriber.record.id, label: "initial", expiresAt: nil, now: now)
        try store.appendAudit([
            .init(time: now, subscriberID: "", method: "atrium security add-subscriber", resourceID: subscriber.record.id, outcome: "ok", requestID: "")
        ])
        return (subscriber.record.id, key)
    }

    /// Runs `body`, turning anything but a ``SecurityError`` into UNAVAILABLE after logging it.
    func guarded<Result>(_ requestID: String, _ body: () throws -> Result) throws -> Result {
        do {
            return try body()
        } catch let error as SecurityError {
            throw error
        } catch {
            logger.error("security database error", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw SecurityError.storageUnavailable()
        }
    }

    // MARK: - Authorization

    /// Decides whether a credential may call a method. Refusals are answers (`allowed` false), not errors.
    func authorize(_ request: Atrium_V1_AuthorizeRequest) throws -> Atrium_V1_AuthorizeResponse {
        let lookup: SecurityStore.CredentialLookup
        switch request.credential {
        case .apiKey(let text):
            guard let key = ApiKeySecret(parsing: text) else { return .refusal(.unauthenticated, "the API key is malformed") }
            lookup = try guarded(request.requestID) { try store.lookup(key, now: now()) }
        case .certificate(let certificate):
            lookup = try guarded(request.requestID) {
                try store.lookupCertificate(serial: certificate.serial, sha256: certificate.sha256, subscriberID: certificate.subscriberID, now: now())
            }
        case nil:
            return .refusal(.unauthenticated, "no credential")
        }
        guard case .valid(let subscriber) = lookup else {
            if case .refused(let message) = lookup { return .refusal(.unauthenticated, message) }
            return .refusal(.unauthenticated, "unknown credential")
        }
        let roles = Set(subscriber.contract.roles)
        var response = Atrium_V1_AuthorizeResponse.with {
            $0.caller = .with {
                $0.subscriberID = subscriber.record.id
                $0.kind = subscriber.kind
                $0.roles = roles.sorted { $0.rawValue < $1.rawValue }
                $0.patientIds = subscriber.patientIDs
                $0.requestID = request.requestID
            }
            $0.contract = subscriber.contract
            $0.cacheTtlMs = configuration.decisionTTLMilliseconds
        }
        if subscriber.status == .terminated {
            return .refusal(.unauthenticated, "the subscriber's contract has been terminated")
        }
        let refusal: (RPCError.Code, String)? =
            if subscriber.status != .active {
                (.permissionDenied, "the subscriber's contract is suspended")
            } else if let access = MethodPolicy.access(for: request.method) {
                access.refusal(roles: roles).map { (.permissionDenied, $0) }
            } else {
                (.permissionDenied, "'\(request.method)' is not available under any contract")
            }
        if let (code, message) = refusal {
            response.allowed = false
            response.code = Int32(Status.Code(code).rawValue)
            response.message = message
        } else {
            response.allowed = true
        }
        return response
    }

    // MARK: - Audit entries written here

    /// Appends one entry for an administrative change or an account action.
    func audit(_ caller: VerifiedCaller, _ method: MethodDescriptor, resource: String, outcome: String = "ok") {
        do {
            try store.appendAudit([SecurityStore.AuditInput(Atrium_V1_AuditEntry(method, caller: caller, resource: resource, outcome: outcome, at: now()))])
        } catch {
            logger.error("cannot append to the audit log", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
        }
    }
}

extension Atrium_V1_AuthorizeResponse {
    /// A refusal that carries no caller: the gateway never caches it.
    static func refusal(_ code: RPCError.Code, _ message: String) -> Self {
        .with {
            $0.allowed = false
            $0.code = Int32(Status.Code(code).rawValue)
            $0.message = message
        }
    }
}
