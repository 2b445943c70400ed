import AtriumAPI
public import AtriumCore
import AtriumRuntime
public import Foundation
import GRPCCore
import SwiftProtobuf
import Synchronization

/// The registry's side of the upload byte path: `AuthorizeUpload` issues single-use capabilities, and the data
/// plane hands each `POST /v1/uploads/<token>` to ``RegistryUploads``, which stores it with the same code as
/// `Register`.
///
/// A capability is a ``TokenSealer`` token whose payload is: version 2, expiry (Unix ms), the largest body, a
/// random 16-byte upload ID, and the caller's verified identity (`CallerIdentity`, as the gateway forwarded it to
/// `AuthorizeUpload`). The sealing key exists only in the registry's memory. A capability is spent when an upload
/// starts with it, whatever the outcome: the registry keeps spent IDs until they expire.
final class UploadDoor: Sendable {
    private let sealer = TokenSealer()
    /// How long a capability may wait before its upload starts.
    let lifetime: Duration
    /// The largest body a capability admits.
    let maxBytes: UInt64
    private let endpoint = Mutex<(port: Int, baseURL: String)?>(nil)
    /// Upload IDs already used, each with its capability's expiry (Unix ms), and the count at which the expired
    /// ones are next removed (twice what was left after the last removal, so that removing costs O(1) per upload).
    private let spent = Mutex<(ids: [String: UInt64], pruneAt: Int)>(([:], 4096))

    init(lifetime: Duration, maxBytes: UInt64) {
        self.lifetime = lifetime
        self.maxBytes = maxBytes
    }

    func listening(port: Int, baseURL: String) {
        endpoint.withLock { $0 = (port, baseURL) }
    }

    /// `count` capabilities for `caller`, or FAILED_PRECONDITION when no plane serves uploads.
    func authorize(count: UInt32, caller: VerifiedCaller, now: Date = Date()) throws -> Atrium_V1_AuthorizeUploadResponse {
        guard (1...64).contains(count) else { throw RegistryError.invalidArgument("count must be 1 to 64") }
        guard let endpoint = endpoint.withLock({ $0 }) else {
            throw RegistryError.failedPrecondition("this deployment has no upload data plane: use Register")
        }
        let expires = UInt64(now.timeIntervalSince1970 * 1000) + UInt64(lifetime / .milliseconds(1))
        let identity = (try? caller.message.serializedBytes() as [UInt8]) ?? []
        var response = Atrium_V1_AuthorizeUploadResponse()
        response.baseURL = endpoint.baseURL
        response.port = UInt32(endpoint.port)
        var random = SystemRandomNumberGenerator()
        for _ in 0..<count {
            var payload = TokenWriter(version: 2)
            payload.append(expires)
            payload.append(maxBytes)
            payload.append(counted: (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) })
            payload.append(counted: identity)
            response.capabilities.append(
                .with {
                    $0.path = "/v1/uploads/" + sealer.seal(payload.bytes)
                    $0.expires = .init(date: Date(timeIntervalSince1970: Double(expires) / 1000))
                    $0.maxSizeBytes = maxBytes
                }
            )
        }
        return response
    }

    /// Why a capability does not admit an upload.
    enum Refusal: Error, Equatable {
        /// Not sealed here (forged, damaged, or from before a restart).
        case invalid
        case expired
        /// Already used for an upload.
        case spent
    }

    /// What a capability admits.
    struct Admission {
        var caller: VerifiedCaller
        var maxBytes: UInt64
    }

    /// Opens `token` and spends it.
    func admit(_ token: Substring, now: Date = Date()) throws(Refusal) -> Admission {
        guard let payload = sealer.open(token) else { throw .invalid }
        var reader = TokenReader(payload)
        guard reader.byte() == 2,
            let expires = reader.integer(),
            let maxBytes = reader.integer(),
            let id = reader.counted(),
            let identity = reader.counted(),
            reader.atEnd,
            let message = try? Atrium_V1_CallerIdentity(serializedBytes: Array(identity)),
            let caller = try? VerifiedCaller(message: message)
        else { throw .invalid }
        let nowMilliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        guard nowMilliseconds < expires else { throw .expired }
        let key = Hex.encode(id)
        let fresh = spent.withLock { spent in
            if spent.ids.count >= spent.pruneAt {
                spent.ids = spent.ids.filter { $0.value > nowMilliseconds }
                spent.pruneAt = max(4096, spent.ids.count * 2)
            }
            return spent.ids.updateValue(expires, forKey: key) == nil
        }
        guard fresh else { throw .spent }
        return Admission(caller: caller, maxBytes: maxBytes)
    }
}

/// The registry as the data plane's ``UploadIntake``: each upload is checked against its capability and stored
/// by ``RegistryService/register(registrant:header:next:)``, as `Register` stores one.
///
/// Request headers: `Content-Length` (else chunked, up to the capability's bound), `X-Atrium-SHA256` (optional:
/// the object's SHA-256, checked before it is made durable), `X-Atrium-Register-Header` (optional: a
/// `RegisterHeader` in binary protobuf, base64url, for conditions, a comment, supersede, provenance or raw
/// pixels; without it the body is a DICOM Part 10 object).
public struct RegistryUploads: UploadIntake {
    let service: RegistryService

    public func planeListening(port: Int, baseURL: String) {
        service.uploadDoor.listening(port: port, baseURL: baseURL)
    }

    public func upload(
        token: Substring,
        headers: [String: String],
        proceed: () async throws -> Void,
        next: () async throws -> Data?
    ) async -> PlaneAnswer {
        let admission: UploadDoor.Admission
        do {
            admission = try service.uploadDoor.admit(token, now: service.now())
        } catch .expired {
            return Self.refusal(403, .permissionDenied, "the capability has expired: call AuthorizeUpload again", reason: "expired")
        } catch .spent {
            return Self.refusal(409, .failedPrecondition, "the capability was used already: call AuthorizeUpload again", reason: "spent")
        } catch {
            return Self.refusal(403, .permissionDenied, "not a valid capability (forged, damaged, or issued before a restart)", reason: "invalid")
        }
        do {
            var header = Atrium_V1_RegisterHeader.with { $0.format = .dicomPart10 }
            if let text = headers["x-atrium-register-header"] {
                guard let bytes = TokenSealer.data(base64URL: Substring(text)), let given = try? Atrium_V1_RegisterHeader(serializedBytes: bytes) else {
                    throw RegistryError.invalidArgument("X-Atrium-Register-Header is not a base64url RegisterHeader")
                }
                header = given
            }
            if let text = headers["content-length"] {
                guard let length = UInt64(text) else { throw RegistryError.invalidArgument("Content-Length '\(text)' is not a number") }
                guard length <= admission.maxBytes else {
                    return Self.refusal(413, .invalidArgument, "the upload exceeds the capability's \(admission.maxBytes) bytes")
                }
                if header.format != .rawPixels {
                    guard header.sizeBytes == 0 || header.sizeBytes == length else {
                        throw RegistryError.invalidArgument("Content-Length \(length) does not match the header's size_bytes \(header.sizeBytes)")
                    }
                    header.sizeBytes = length
                }
            }
            if let digest = headers["x-atrium-sha256"], header.sha256.isEmpty { header.sha256 = digest.lowercased() }
            try await proceed()
            var received: UInt64 = 0
            let bound = admission.maxBytes
            let response = try await service.register(registrant: admission.caller, header: header) {
                guard let data = try await next() else { return nil }
                let offset = received
                received += UInt64(data.count)
                guard received <= bound else { throw RegistryError.invalidArgument("the upload exceeds the capability's \(bound) bytes") }
                return .chunk(.with { $0.offset = offset; $0.data = data })
            }
            return PlaneAnswer(status: 200, json: (try? response.jsonString()) ?? "{}")
        } catch {
            let rpc = (error as? RPCError) ?? (error as? any RPCErrorConvertible).map { RPCError($0) }
                ?? RPCError(code: .unavailable, message: "the upload was not stored: \(error)")
            return Self.refusal(Self.httpStatus(rpc.code), rpc.code, rpc.message)
        }
    }

    /// The HTTP status for a gRPC status, as gRPC-HTTP transcoders map them.
    static func httpStatus(_ code: RPCError.Code) -> Int {
        switch code {
        case .invalidArgument, .outOfRange: 400
        case .unauthenticated: 401
        case .permissionDenied: 403
        case .notFound: 404
        case .alreadyExists, .aborted, .failedPrecondition: 409
        case .resourceExhausted: 507
        case .unavailable: 503
        case .deadlineExceeded: 504
        case .unimplemented: 501
        default: 500
        }
    }

    /// `{"code": 8, "status": "RESOURCE_EXHAUSTED", "message": "…"}` (and `reason` for a capability refused).
    static func refusal(_ status: Int, _ code: RPCError.Code, _ message: String, reason: String? = nil) -> PlaneAnswer {
        var object: [String: Any] = ["code": code.rawValue, "status": code.statusName, "message": message]
        if let reason { object["reason"] = reason }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return PlaneAnswer(status: status, json: String(decoding: data, as: UTF8.self))
    }
}
