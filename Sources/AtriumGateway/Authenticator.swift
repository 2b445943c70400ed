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

/// Turns the credential on a call into a verified caller, by asking the security service, and caches the
/// answer for the TTL security allows (5 s by default), so that revocation takes effect within that window.
///
/// A credential is an API key, sent as `authorization: Bearer atr_…` or `x-api-key: atr_…`. Calls without
/// one, or with one security does not know, get UNAUTHENTICATED and are never cached.
final class Authenticator: Sendable {
    private struct Entry {
        var caller: VerifiedCaller
        var expires: ContinuousClock.Instant
    }

    private let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
    private let cache = Mutex<[String: Entry]>([:])
    private let maximumTTL: Duration
    private let logger: Logger

    init(security: GRPCClient<HTTP2ClientTransport.Posix>, maximumTTL: Duration, logger: Logger) {
        self.security = Atrium_V1_SecurityInternal.Client(wrapping: security)
        self.maximumTTL = maximumTTL
        self.logger = logger
    }

    /// The caller of a call with `metadata` to `method`, with `requestID` as its request ID.
    func authenticate(metadata: Metadata, method: MethodDescriptor, requestID: String) async throws -> VerifiedCaller {
        guard let key = Self.apiKey(in: metadata) else {
            throw RPCError(code: .unauthenticated, message: "no credential: send an API key as 'authorization: Bearer atr_…'")
        }
        let cacheKey = Hex.encode(SHA256.hash(data: Data(key.utf8)))
        let now = ContinuousClock.now
        if let entry = cache.withLock({ $0[cacheKey] }), entry.expires > now {
            var caller = entry.caller
            caller.requestID = requestID
            return caller
        }
        let response: Atrium_V1_AuthorizeResponse
        do {
            response = try await security.authorize(
                .with {
                    $0.apiKey = key
                    $0.method = method.fullyQualifiedMethod
                    $0.requestID = requestID
                },
                options: .fastFailing
            )
        } catch let error as RPCError {
            logger.error("security did not answer Authorize", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RPCError(code: .unavailable, message: "the gateway cannot verify credentials right now; try again")
        }
        guard response.allowed else {
            let code = RPCError.Code(Status.Code(rawValue: Int(response.code)) ?? .permissionDenied) ?? .permissionDenied
            throw RPCError(code: code, message: response.message)
        }
        var caller = try VerifiedCaller(message: response.caller)
        caller.requestID = requestID
        let ttl = min(maximumTTL, .milliseconds(Int(response.cacheTtlMs)))
        if ttl > .zero {
            cache.withLock { cache in
                if cache.count > 10_000 { cache.removeAll() }
                cache[cacheKey] = Entry(caller: caller, expires: now + ttl)
            }
        }
        return caller
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
}

extension CallOptions {
    /// Calls to backends fail at once when the backend is down, instead of waiting for it.
    static var fastFailing: CallOptions {
        var options = CallOptions.defaults
        options.waitForReady = false
        options.timeout = .seconds(10)
        return options
    }
}
