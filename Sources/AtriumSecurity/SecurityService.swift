import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
public import AtriumRuntime
public import Foundation
public import GRPCCore
public import Logging

/// The security service's settings.
///
/// Keys (besides the runtime's): `ATRIUM_AUTH_CACHE_TTL_MS`: how long the gateway may cache a decision
/// (default 5000). Revocation takes effect within this window.
public struct SecurityConfiguration: Sendable {
    /// The SQLite file.
    public var databasePath: String
    /// The TTL handed to the gateway with every decision.
    public var decisionTTLMilliseconds: UInt32

    /// Explicit settings.
    public init(databasePath: String, decisionTTLMilliseconds: UInt32 = 5000) {
        self.databasePath = databasePath
        self.decisionTTLMilliseconds = decisionTTLMilliseconds
    }

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        self.databasePath = Self.databasePath(dataDirectory: runtime.dataDirectory)
        self.decisionTTLMilliseconds = UInt32(try values.int("ATRIUM_AUTH_CACHE_TTL_MS", default: 5000, range: 0...60_000))
    }

    /// Where the database lives under a data directory.
    public static func databasePath(dataDirectory: String) -> String {
        "\(dataDirectory)/security/security.sqlite"
    }
}

/// The security service: who subscribers are and whether a credential is valid.
///
/// This first version authenticates API keys for the gateway. Contracts, roles enforcement, enrolment,
/// metering, statements and the audit log arrive with the security and gateway issue (#3); their RPCs
/// answer UNIMPLEMENTED until then.
public struct SecurityService: Sendable {
    private let store: SecurityStore
    private let configuration: SecurityConfiguration
    private let logger: Logger
    private let now: @Sendable () -> Date

    /// Opens the database.
    public init(configuration: SecurityConfiguration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) throws {
        self.store = try SecurityStore(path: configuration.databasePath)
        self.configuration = configuration
        self.logger = logger
        self.now = now
    }

    /// Every RPC service the security process serves.
    public var rpcServices: [any RegistrableRPCService] {
        let subject = "the security and gateway issue (#3)"
        return [
            InternalSecurity(service: self),
            UnimplementedService(methods: Atrium_V1_SecurityAdmin.Method.descriptors, subject: subject),
            UnimplementedService(methods: Atrium_V1_Account.Method.descriptors, subject: subject),
        ]
    }

    /// Creates the first operator and its API key if the database has no operator yet.
    ///
    /// - Returns: the new operator's ID and its API key (to be shown once), or `nil` when one already exists.
    public static func bootstrapOperator(databasePath: String, now: Date = Date()) throws -> (subscriberID: String, apiKey: String)? {
        let store = try SecurityStore(path: databasePath)
        guard try !store.hasOperator() else { return nil }
        let contract = Atrium_V1_Contract.with {
            $0.roles = [.register, .receive, .process, .execute, .publish, .print, .admin]
        }
        let subscriber = try store.createSubscriber(displayName: "Operator", kind: .operator, contract: contract, now: now)
        let (_, key) = try store.createApiKey(subscriberID: subscriber.id, label: "bootstrap", expiresAt: nil, now: now)
        return (subscriber.id, key)
    }

    /// Creates a subscriber with an API key (tests and the admin CLI until #3 brings `CreateSubscriber`).
    public static func createSubscriber(
        databasePath: String,
        displayName: String,
        kind: Atrium_V1_SubscriberKind,
        roles: [Atrium_V1_Role],
        now: Date = Date()
    ) throws -> (subscriberID: String, apiKey: String) {
        let store = try SecurityStore(path: databasePath)
        let subscriber = try store.createSubscriber(displayName: displayName, kind: kind, contract: .with { $0.roles = roles }, now: now)
        let (_, key) = try store.createApiKey(subscriberID: subscriber.id, label: "initial", expiresAt: nil, now: now)
        return (subscriber.id, key)
    }

    /// Decides whether a credential may call a method.
    func authorize(_ request: Atrium_V1_AuthorizeRequest) throws -> Atrium_V1_AuthorizeResponse {
        let refusal: (RPCError.Code, String) -> Atrium_V1_AuthorizeResponse = { code, message in
            .with {
                $0.allowed = false
                $0.code = Int32(Status.Code(code).rawValue)
                $0.message = message
            }
        }
        switch request.credential {
        case .apiKey(let text):
            guard let key = ApiKeySecret(parsing: text) else {
                return refusal(.unauthenticated, "the API key is malformed")
            }
            let lookup: SecurityStore.KeyLookup
            do {
                lookup = try store.lookup(key, now: now())
            } catch {
                logger.error("cannot read credentials", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(request.requestID)"])
                throw SecurityError.storageUnavailable
            }
            switch lookup {
            case .unknown: return refusal(.unauthenticated, "unknown API key")
            case .revoked: return refusal(.unauthenticated, "the API key has been revoked")
            case .expired: return refusal(.unauthenticated, "the API key has expired")
            case .valid(let subscriber, let contract):
                let status = Atrium_V1_SubscriberStatus(rawValue: subscriber.status) ?? .unspecified
                guard status == .active else {
                    return refusal(.permissionDenied, "the subscriber's contract is not active")
                }
                let roles = (contract?.roles ?? "").split(separator: ",").compactMap { Int($0) }.compactMap(Atrium_V1_Role.init(rawValue:))
                return .with {
                    $0.allowed = true
                    $0.caller = .with {
                        $0.subscriberID = subscriber.id
                        $0.kind = Atrium_V1_SubscriberKind(rawValue: subscriber.kind) ?? .unspecified
                        $0.roles = roles
                        $0.requestID = request.requestID
                    }
                    if let contract, let terms = try? Atrium_V1_Contract(serializedBytes: contract.terms) {
                        $0.contract = terms
                    }
                    $0.cacheTtlMs = configuration.decisionTTLMilliseconds
                }
            }
        case .certificate:
            return refusal(.unauthenticated, "client-certificate authentication arrives with the security and gateway issue (#3)")
        case nil:
            return refusal(.unauthenticated, "no credential")
        }
    }
}
