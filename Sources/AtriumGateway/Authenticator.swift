import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import X509
import AtriumTransport

/// A refused call: the status to return and, when the credential was valid, whose call it was (for the audit log).
struct AdmissionRefusal: Error {
    var error: RPCError
    var subscriberID: String
}

/// A call the gateway let through: who is calling (absent for open methods such as `Enroll`) and the terms
/// the gateway enforces itself.
struct Admission: Sendable {
    var caller: VerifiedCaller?
    var limits: RateLimits
    /// The largest message accepted from this caller.
    var maxMessageBytes: Int
    /// The key its rate limits are kept under: the subscriber, or the remote address for open methods.
    var limiterKey: String
}

/// The credential on a call.
enum Credential: Sendable {
    case apiKey(String)
    case certificate(Atrium_V1_ClientCertificate)

    /// A stable key for the cache that does not hold the secret itself.
    var cacheKey: String {
        switch self {
        case .apiKey(let key): "k:" + Hex.encode(SHA256.hash(data: Data(key.utf8)))
        case .certificate(let certificate): "c:" + certificate.sha256
        }
    }
}

/// Turns the credential on a call into an admission or a refusal, by asking security's `Authorize`, and
/// caches each (credential, method) decision for the TTL security allows (5 s by default), so revocation takes
/// effect within that window.
///
/// A credential is an API key (`authorization: Bearer atr_…` or `x-api-key: atr_…`) or, on the mTLS listener,
/// a client certificate that the Atrium CA issued at enrolment. Unknown credentials are never cached.
final class Authenticator: Sendable {
    private struct Entry {
        /// The admitted caller and its contract, or the refusal.
        var decision: Result<(VerifiedCaller, Atrium_V1_Contract), AdmissionRefusal>
        var expires: ContinuousClock.Instant
    }

    private let security: any Atrium_V1_SecurityInternal.ClientProtocol
    private let cache = Mutex<[String: Entry]>([:])
    private let statistics = Mutex<(hits: Int, misses: Int)>((0, 0))
    /// Failed authentications per remote address.
    private let failures = RateLimiter()
    /// Failed authentications allowed per remote address before calls with credentials not in the cache are
    /// refused without asking security.
    private let failureLimits: RateLimits
    private let maximumTTL: Duration
    private let defaultMaxMessageBytes: Int
    private let logger: Logger

    init(
        security: any Atrium_V1_SecurityInternal.ClientProtocol,
        maximumTTL: Duration,
        failureLimits: RateLimits,
        defaultMaxMessageBytes: Int,
        logger: Logger
    ) {
        self.security = security
        self.maximumTTL = maximumTTL
        self.failureLimits = failureLimits
        self.defaultMaxMessageBytes = defaultMaxMessageBytes
        self.logger = logger
    }

    /// Cache hits and misses since start.
    var cacheStatistics: (hits: Int, misses: Int) { statistics.withLock { $0 } }

    /// Admits a call to `method` or throws an ``AdmissionRefusal`` (UNAUTHENTICATED, PERMISSION_DENIED,
    /// RESOURCE_EXHAUSTED for an address with too many failed authentications, UNAVAILABLE).
    func admit(metadata: Metadata, context: ServerContext, method: MethodDescriptor, requestID: String) async throws(AdmissionRefusal) -> Admission {
        let access = MethodPolicy.access(for: method)
        if access == .open {
            return Admission(caller: nil, limits: Self.openLimits, maxMessageBytes: defaultMaxMessageBytes, limiterKey: "peer:" + Self.host(of: context.remotePeer))
        }
        let credential: Credential
        do throws(RPCError) {
            guard let presented = try Self.credential(metadata: metadata, context: context) else {
                throw RPCError(
                    code: .unauthenticated,
                    message: "no credential: send an API key as 'authorization: Bearer atr_…', or a client certificate to the mTLS port"
                )
            }
            credential = presented
        } catch {
            throw AdmissionRefusal(error: error, subscriberID: "")
        }
        let (caller, contract) = try await decide(credential, method: method, requestID: requestID, peer: Self.host(of: context.remotePeer))
        var stamped = caller
        stamped.requestID = requestID
        let cap = contract.maxMessageBytes == 0 ? defaultMaxMessageBytes : min(Int(contract.maxMessageBytes), defaultMaxMessageBytes)
        return Admission(caller: stamped, limits: RateLimits(contract), maxMessageBytes: cap, limiterKey: "sub:" + caller.subscriberID)
    }

    private func decide(
        _ credential: Credential,
        method: MethodDescriptor,
        requestID: String,
        peer: String
    ) async throws(AdmissionRefusal) -> (VerifiedCaller, Atrium_V1_Contract) {
        let key = credential.cacheKey + " " + method.fullyQualifiedMethod
        let now = ContinuousClock.now
        if let entry = cache.withLock({ $0[key] }), entry.expires > now {
            statistics.withLock { $0.hits += 1 }
            return try entry.decision.get()
        }
        // An address that keeps presenting bad credentials is cut off before it costs security a lookup.
        let failureKey = "authfail:" + peer
        guard failures.hasToken(failureKey, limits: failureLimits) else {
            throw AdmissionRefusal(
                error: RPCError(code: .resourceExhausted, message: "too many failed authentications from this address; retry later"),
                subscriberID: ""
            )
        }
        statistics.withLock { $0.misses += 1 }
        let response: Atrium_V1_AuthorizeResponse
        do {
            response = try await security.authorize(
                .with {
                    switch credential {
                    case .apiKey(let text): $0.apiKey = text
                    case .certificate(let certificate): $0.certificate = certificate
                    }
                    $0.method = method.fullyQualifiedMethod
                    $0.requestID = requestID
                },
                options: .internalCall
            )
        } catch {
            logger.error("security did not answer Authorize", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw AdmissionRefusal(error: RPCError(code: .unavailable, message: "the gateway cannot verify credentials right now; try again"), subscriberID: "")
        }
        let decision: Result<(VerifiedCaller, Atrium_V1_Contract), AdmissionRefusal>
        if response.allowed, let caller = try? VerifiedCaller(message: response.caller) {
            decision = .success((caller, response.contract))
        } else {
            let code = Status.Code(rawValue: Int(response.code)).flatMap(RPCError.Code.init) ?? .permissionDenied
            decision = .failure(AdmissionRefusal(error: RPCError(code: code, message: response.message), subscriberID: response.caller.subscriberID))
            if code == .unauthenticated { _ = failures.admit(failureKey, limits: failureLimits) }
        }
        // An unknown or revoked credential is not cached: the next call asks again.
        let ttl = min(maximumTTL, .milliseconds(Int(response.cacheTtlMs)))
        if ttl > .zero, response.hasCaller {
            cache.withLock { cache in
                if cache.count > 100_000 { cache.removeAll() }
                cache[key] = Entry(decision: decision, expires: now + ttl)
            }
        }
        return try decision.get()
    }

    /// Open methods (enrolment) are limited per remote address: 5 requests/s, bursts of 10.
    static let openLimits = RateLimits(requestsPerSecond: 5, requestBurst: 10, bytesPerSecond: 0, byteBurst: 0)

    /// The credential on a call: the client certificate if the peer presented one, else an API key header.
    static func credential(metadata: Metadata, context: ServerContext) throws(RPCError) -> Credential? {
        if let certificate = PeerIdentity.certificate(of: context) {
            guard let subscriberID = CertificateIdentity.subscriberID(of: certificate) else {
                throw RPCError(code: .unauthenticated, message: "the client certificate does not name an Atrium subscriber")
            }
            return .certificate(
                .with {
                    $0.serial = CertificateIdentity.serial(of: certificate)
                    $0.subscriberID = subscriberID
                    $0.sha256 = (try? CertificateIdentity.fingerprint(of: certificate)) ?? ""
                }
            )
        }
        return apiKey(in: metadata).map(Credential.apiKey)
    }

    /// The API key in `authorization: Bearer …` or `x-api-key`, if any.
    static func apiKey(in metadata: Metadata) -> String? {
        for value in metadata[stringValues: "authorization"] {
            let parts = value.split(separator: " ", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == "bearer" { return String(parts[1]).trimmingCharacters(in: .whitespaces) }
        }
        for value in metadata[stringValues: "x-api-key"] where !value.isEmpty {
            return value
        }
        return nil
    }

    /// The host part of a gRPC peer string such as `ipv4:127.0.0.1:5000` or `ipv6:[::1]:5000`.
    static func host(of peer: String) -> String {
        if let open = peer.firstIndex(of: "["), let close = peer.firstIndex(of: "]"), open < close {
            return String(peer[peer.index(after: open)..<close])
        }
        let parts = peer.split(separator: ":")
        return parts.count >= 3 ? String(parts[1]) : peer
    }
}
