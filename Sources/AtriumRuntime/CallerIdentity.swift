import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
import AtriumTransport
public import GRPCCore
import GRPCNIOTransportHTTP2
import Crypto
import SwiftASN1
public import X509

/// The metadata keys that carry a caller's identity from the gateway to a backend. Backends believe them
/// only when the peer's client certificate is the gateway's (see ``VerifiedCaller``); the gateway strips
/// any that a caller sends.
public enum AtriumMetadata {
    /// The authenticated subscriber ID.
    public static let subscriber = "atrium-subscriber"
    /// The subscriber's kind, e.g. `hospital`.
    public static let kind = "atrium-kind"
    /// The contract's roles, comma-separated, e.g. `register,receive`.
    public static let roles = "atrium-roles"
    /// For individuals: the linked patient IDs, comma-separated.
    public static let patientIDs = "atrium-patient-ids"
    /// The request ID the gateway assigned.
    public static let requestID = "atrium-request-id"

    /// Every identity key; a gateway removes these from what a caller sends.
    public static let all = [subscriber, kind, roles, patientIDs, requestID]
}

extension Metadata {
    /// This metadata without what must not travel to another hop: pseudo-headers and transport headers
    /// (`:status`, `content-type`, `te`, `grpc-*`), credentials (`authorization`, `x-api-key`) and identity
    /// headers (`atrium-*`). Pseudo-headers inside trailers make a peer reset the stream.
    public var forwardable: Metadata {
        var result = Metadata()
        for (key, value) in self {
            let lower = key.lowercased()
            if lower.hasPrefix(":") || lower.hasPrefix("grpc-") || lower.hasPrefix("atrium-") { continue }
            if ["content-type", "te", "user-agent", "authorization", "x-api-key"].contains(lower) { continue }
            switch value {
            case .string(let text): result.addString(text, forKey: key)
            case .binary(let bytes): result.addBinary(bytes, forKey: key)
            }
        }
        return result
    }
}

extension RPCError {
    /// The same error with only ``GRPCCore/Metadata/forwardable`` metadata: how a service passes on an error
    /// it received from another service.
    public var withoutTransportHeaders: RPCError {
        RPCError(code: code, message: message, metadata: metadata.forwardable)
    }
}

/// Who is at the other end of a server connection, from the TLS client certificate it presented.
public enum PeerIdentity {
    /// The verified client certificate of the peer, if the listener uses mTLS and the peer sent one.
    public static func certificate(of context: ServerContext) -> Certificate? {
        (context.transportSpecific as? HTTP2ServerTransport.Posix.Context)?.peerCertificate
    }

    /// The Atrium service at the other end: the one an in-process call came from (``InProcessPeerInterceptor``),
    /// or the one whose certificate the peer presented (URI SAN `atrium://service/<name>`), if any.
    public static func service(of context: ServerContext) -> ServiceName? {
        if let inProcess = context.transportSpecific as? InProcessCaller { return inProcess.service }
        guard let certificate = certificate(of: context) else { return nil }
        return CertificateIdentity.service(of: certificate)
    }
}

/// Who made a call that arrived through an in-process transport (`atrium serve all`): set by
/// ``InProcessPeerInterceptor`` on the server of each caller-callee link, never by a network transport.
public struct InProcessCaller: ServerContext.TransportSpecific {
    /// The calling service.
    public var service: ServiceName
}

/// Marks every call on one in-process link as coming from `caller`. Each link (one caller, one callee) has a
/// server of its own, reachable only from inside the process, so the caller is known by construction, as a
/// certificate establishes it between processes.
public struct InProcessPeerInterceptor: ServerInterceptor {
    private let caller: ServiceName

    public init(caller: ServiceName) {
        self.caller = caller
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var context = context
        context.transportSpecific = InProcessCaller(service: caller)
        return try await next(request, context)
    }
}

/// Refuses every call whose peer is not an Atrium service, with UNAUTHENTICATED.
///
/// Backends listen with mTLS against the Atrium CA, so a client without a certificate, or with one from
/// another CA, fails the TLS handshake before any call. This interceptor covers the remaining case: a
/// certificate from the Atrium CA that belongs to a subscriber rather than a service.
public struct ServicePeerInterceptor: ServerInterceptor {
    private let allowed: Set<ServiceName>

    /// Accepts peers that present one of `allowed` services' certificates.
    public init(allowed: Set<ServiceName> = Set(ServiceName.allCases)) {
        self.allowed = allowed
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        guard let service = PeerIdentity.service(of: context), allowed.contains(service) else {
            throw RPCError(code: .unauthenticated, message: "this endpoint accepts only Atrium service certificates")
        }
        return try await next(request, context)
    }
}

/// Resolves the caller of every call once, before any handler runs: the ``VerifiedCaller`` that
/// ``VerifiedCaller/current()`` returns inside the handler, or the reason there is none.
///
/// A backend installs it after its peer checks. Resolution never fails the call here: internal services
/// (called by other services, with the caller in the message) have no gateway identity and never ask for one;
/// a public handler that asks gets the UNAUTHENTICATED error the resolution produced.
public struct CallerInterceptor: ServerInterceptor {
    public init() {}

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        let resolved = Result { () throws(RPCError) in try VerifiedCaller(metadata: request.metadata, context: context) }
        var response = try await VerifiedCaller.$resolved.withValue(resolved) {
            try await next(request, context)
        }
        // A streaming response's body runs after `next` returns, outside the scope above: bind it there too.
        if case .success(var contents) = response.accepted {
            let producer = contents.producer
            contents.producer = { writer in
                try await VerifiedCaller.$resolved.withValue(resolved) { try await producer(writer) }
            }
            response.accepted = .success(contents)
        }
        return response
    }
}

/// The subscriber a backend call is made for, as vouched for by the gateway.
///
/// ``CallerInterceptor`` resolves it once per call from the identity metadata (``init(metadata:context:)``),
/// and every backend handler that acts for a subscriber starts with ``current()``; no service parses the
/// identity metadata itself.
public struct VerifiedCaller: Sendable, Hashable {
    /// The caller ``CallerInterceptor`` resolved for the call this task serves, or why there is none.
    @TaskLocal static var resolved: Result<VerifiedCaller, RPCError>?

    /// The caller of the call this task serves. UNAUTHENTICATED when the peer is not the gateway or the
    /// gateway sent no identity; INTERNAL when the server has no ``CallerInterceptor`` (a wiring defect).
    public static func current() throws(RPCError) -> VerifiedCaller {
        guard let resolved else {
            throw RPCError(code: .internalError, message: "the server resolves no caller identity (CallerInterceptor is missing)")
        }
        return try resolved.get()
    }

    /// The subscriber ID.
    public var subscriberID: String
    /// The subscriber's kind.
    public var kind: Atrium_V1_SubscriberKind
    /// The contract's roles at the time of the call.
    public var roles: Set<Atrium_V1_Role>
    /// For individuals, the linked patient IDs.
    public var patientIDs: [String]
    /// The gateway's request ID.
    public var requestID: String

    /// A caller from its parts (tests, internal calls).
    public init(subscriberID: String, kind: Atrium_V1_SubscriberKind, roles: Set<Atrium_V1_Role>, patientIDs: [String] = [], requestID: String) {
        self.subscriberID = subscriberID
        self.kind = kind
        self.roles = roles
        self.patientIDs = patientIDs
        self.requestID = requestID
    }

    /// Reads the caller from identity metadata, provided the peer is the gateway. UNAUTHENTICATED otherwise.
    public init(metadata: Metadata, context: ServerContext) throws(RPCError) {
        guard PeerIdentity.service(of: context) == .gateway else {
            throw RPCError(code: .unauthenticated, message: "caller identity is accepted only from the Atrium gateway")
        }
        for key in AtriumMetadata.all where Array(metadata[stringValues: key]).count > 1 {
            throw RPCError(code: .unauthenticated, message: "caller identity header '\(key)' appears more than once")
        }
        guard let subscriber = metadata[stringValues: AtriumMetadata.subscriber].first(where: { _ in true }), !subscriber.isEmpty else {
            throw RPCError(code: .unauthenticated, message: "the gateway sent no caller identity")
        }
        let kindText = metadata[stringValues: AtriumMetadata.kind].first(where: { _ in true }) ?? ""
        let rolesText = metadata[stringValues: AtriumMetadata.roles].first(where: { _ in true }) ?? ""
        let patientsText = metadata[stringValues: AtriumMetadata.patientIDs].first(where: { _ in true }) ?? ""
        self.subscriberID = subscriber
        self.kind = Atrium_V1_SubscriberKind(name: kindText) ?? .unspecified
        self.roles = Set(rolesText.split(separator: ",").compactMap { Atrium_V1_Role(name: String($0)) })
        self.patientIDs = patientsText.split(separator: ",").map(String.init)
        self.requestID = metadata[stringValues: AtriumMetadata.requestID].first(where: { _ in true }) ?? ""
    }

    /// The caller as the protobuf message internal RPCs carry.
    public var message: Atrium_V1_CallerIdentity {
        .with {
            $0.subscriberID = subscriberID
            $0.kind = kind
            $0.roles = roles.sorted { $0.rawValue < $1.rawValue }
            $0.patientIds = patientIDs
            $0.requestID = requestID
        }
    }

    /// A caller from the message an internal RPC carries; INVALID_ARGUMENT when it names no subscriber.
    public init(message: Atrium_V1_CallerIdentity) throws(RPCError) {
        guard !message.subscriberID.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "caller.subscriber_id is required")
        }
        self.init(
            subscriberID: message.subscriberID,
            kind: message.kind,
            roles: Set(message.roles),
            patientIDs: message.patientIds,
            requestID: message.requestID
        )
    }

    /// The identity metadata the gateway sends for this caller.
    public var metadata: Metadata {
        var metadata = Metadata()
        metadata.addString(subscriberID, forKey: AtriumMetadata.subscriber)
        metadata.addString(kind.name, forKey: AtriumMetadata.kind)
        metadata.addString(roles.map(\.name).sorted().joined(separator: ","), forKey: AtriumMetadata.roles)
        if !patientIDs.isEmpty {
            metadata.addString(patientIDs.joined(separator: ","), forKey: AtriumMetadata.patientIDs)
        }
        metadata.addString(requestID, forKey: AtriumMetadata.requestID)
        return metadata
    }
}

extension Atrium_V1_SubscriberKind {
    /// The lower-case name used in metadata and the CLI: `hospital`, `individual`, `vendor`, `printer`, `operator`.
    public var name: String {
        switch self {
        case .hospital: "hospital"
        case .individual: "individual"
        case .vendor: "vendor"
        case .printer: "printer"
        case .operator: "operator"
        case .unspecified, .UNRECOGNIZED: "unspecified"
        }
    }

    /// The kind named `name`, if any.
    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.name == name && $0 != .unspecified }) else { return nil }
        self = kind
    }
}

extension Atrium_V1_Role {
    /// The lower-case name used in contracts, metadata and messages: `register`, `receive`, ...
    public var name: String {
        switch self {
        case .register: "register"
        case .receive: "receive"
        case .process: "process"
        case .execute: "execute"
        case .publish: "publish"
        case .print: "print"
        case .admin: "admin"
        case .unspecified, .UNRECOGNIZED: "unspecified"
        }
    }

    /// The role named `name`, if any.
    public init?(name: String) {
        guard let role = Self.allCases.first(where: { $0.name == name && $0 != .unspecified }) else { return nil }
        self = role
    }
}

extension RPCError.Code {
    /// The canonical upper-case name of the status, e.g. `PERMISSION_DENIED`, as the audit log records it.
    public var statusName: String {
        let names = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
            "DATA_LOSS", "UNAUTHENTICATED",
        ]
        let raw = Status.Code(self).rawValue
        return names.indices.contains(raw) ? names[raw] : "CODE_\(raw)"
    }
}
