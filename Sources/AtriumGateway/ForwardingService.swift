import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import AtriumBackend
import AtriumPool

/// The gateway's only service: every public method, admitted against the caller's contract and forwarded to
/// its backend as a stream of opaque messages, message by message, with no buffering of whole payloads.
///
/// For each call: a request ID; the credential checked and the method's role required (``Authenticator``);
/// the request rate limit, then the byte rate and the message-size cap on every message in either
/// direction (``RateLimiter``); the caller's credential headers and any `atrium-*` headers removed and the
/// verified identity added (see ``VerifiedCaller``), which backends accept only because this process
/// presents the gateway's certificate; the deadline passed on; and one audit entry with the outcome.
/// Processing calls go to an instance of the ``ProcessingPool``.
struct ForwardingService: RegistrableRPCService {
    let authenticator: Authenticator
    let limiter: RateLimiter
    let backends: [ServiceName: Connection]
    let pool: ProcessingPool?
    let audit: AuditTrail
    let logger: Logger

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        for (method, backend) in PublicRoutes.methods {
            router.registerHandler(forMethod: method, deserializer: PassthroughCoder(), serializer: PassthroughCoder()) { request, context in
                try await forward(request, context: context, method: method, backend: backend)
            }
        }
    }

    /// The calls that hand out data-plane capabilities.
    static let bytePathMethods: Set<MethodDescriptor> = [
        Atrium_V1_Delivery.Method.AuthorizeFetch.descriptor, Atrium_V1_Registry.Method.AuthorizeUpload.descriptor,
    ]

    private func forward(
        _ request: StreamingServerRequest<GRPCNIOTransportBytes>,
        context: ServerContext,
        method: MethodDescriptor,
        backend: ServiceName
    ) async throws -> StreamingServerResponse<GRPCNIOTransportBytes> {
        let requestID = Identifier.make(prefix: "req")
        let admission: Admission
        do {
            admission = try await authenticator.admit(metadata: request.metadata, context: context, method: method, requestID: requestID)
        } catch {
            try refuse(error.error, method: method, subscriber: error.subscriberID, requestID: requestID)
        }
        if let retry = limiter.admit(admission.limiterKey, limits: admission.limits) {
            let milliseconds = retry.wholeMilliseconds + 1
            let error = RPCError(
                code: .resourceExhausted,
                message: "rate limit of \(admission.limits.requestsPerSecond) requests/s exceeded; retry in \(milliseconds) ms"
            )
            try refuse(error, method: method, subscriber: admission.caller?.subscriberID ?? "", requestID: requestID)
        }
        if Self.bytePathMethods.contains(method), admission.limits.bytesPerSecond > 0 {
            // The data plane does not pace bytes, so a contract that paces them fetches and uploads through the gateway.
            let instead = method == Atrium_V1_Delivery.Method.AuthorizeFetch.descriptor ? "Fetch" : "Register"
            let error = RPCError(
                code: .failedPrecondition,
                message: "the contract paces transfers at \(Int(admission.limits.bytesPerSecond)) bytes/s, which the byte path cannot: use \(instead)"
            )
            try refuse(error, method: method, subscriber: admission.caller?.subscriberID ?? "", requestID: requestID)
        }
        var metadata = request.metadata.forwardable
        if let caller = admission.caller {
            metadata.add(contentsOf: caller.metadata)
        } else {
            metadata.addString(requestID, forKey: AtriumMetadata.requestID)
        }
        let authenticator = self.authenticator
        let callerMetadata = request.metadata
        let call = Call(
            requestID: requestID,
            method: method,
            metadata: metadata,
            options: { var options = CallOptions.internalCall; options.timeout = Forwarding.timeout(in: request.metadata); return options }(),
            admission: admission,
            limiter: limiter
        ) {
            // A long stream is held to the same decision as a new call: revoked, suspended or terminated, it ends.
            do {
                _ = try await authenticator.admit(metadata: callerMetadata, context: context, method: method, requestID: requestID)
            } catch let refusal as AdmissionRefusal {
                throw refusal.error
            }
        }
        let subscriber = admission.caller?.subscriberID ?? ""
        let watch = method.method.hasPrefix("Watch")
        return StreamingServerResponse { writer in
            do {
                let trailers: Metadata
                if watch {
                    // A watch stream never ends on its own: at graceful shutdown it ends with UNAVAILABLE, so the
                    // gateway can drain and the watcher reconnects (to this gateway once back, or another).
                    trailers = try await endingAtShutdown("the gateway") {
                        try await relay(request.messages, call: call, backend: backend, writer: writer)
                    }
                } else {
                    trailers = try await relay(request.messages, call: call, backend: backend, writer: writer)
                }
                record(method: method, subscriber: subscriber, requestID: requestID, code: nil)
                return trailers
            } catch let error as RPCError {
                record(method: method, subscriber: subscriber, requestID: requestID, code: error.code)
                // A backend's error carries the headers of its response; pass on only the caller-visible ones,
                // or the pseudo-headers in them would make the trailers invalid and reset the stream.
                throw error.withoutTransportHeaders
            } catch {
                record(method: method, subscriber: subscriber, requestID: requestID, code: .unknown)
                throw error
            }
        }
    }

    /// Audits and logs a refusal at the door, then throws it.
    private func refuse(_ error: RPCError, method: MethodDescriptor, subscriber: String, requestID: String) throws -> Never {
        record(method: method, subscriber: subscriber, requestID: requestID, code: error.code)
        logger.info("refused", metadata: [LogKey.method: "\(method)", LogKey.requestID: "\(requestID)", LogKey.status: "\(error.code)"])
        throw error
    }

    private func record(method: MethodDescriptor, subscriber: String, requestID: String, code: RPCError.Code?) {
        audit.enqueue(Atrium_V1_AuditEntry(method, subscriberID: subscriber, requestID: requestID, outcome: code.map(\.statusName) ?? "ok"))
    }

    /// Relays a call to its backend; processing calls go to a pool instance, and move to another instance
    /// when the chosen one cannot be reached before anything but the first request message was consumed.
    private func relay(
        _ messages: RPCAsyncSequence<GRPCNIOTransportBytes, any Error>,
        call: Call,
        backend: ServiceName,
        writer: RPCWriter<GRPCNIOTransportBytes>
    ) async throws -> Metadata {
        let source = RequestSource(messages)
        guard backend == .processing, let pool else {
            guard let client = backends[backend] else {
                throw RPCError(code: .unavailable, message: "the \(backend) service is not configured on this gateway")
            }
            return try await call.relay(source, client: client.rpc, writer: writer)
        }
        // Read the first message before choosing, so that it can be sent again to another instance.
        try await source.prime(limit: call.admission.maxMessageBytes)
        switch call.method.method {
        case "GetJob", "GetJobResult", "Cancel":
            // A job lives on the instance that ran it; its ID ends with that instance's ID.
            let instance = try await jobOwner(source, call: call, pool: pool)
            instance.begin()
            defer { instance.end() }
            return try await call.relay(source, client: instance.client.rpc, writer: writer)
        case "ListJobs":
            return try await listJobs(source, call: call, pool: pool, writer: writer)
        default:
            break
        }
        var attempts = 0
        while true {
            attempts += 1
            guard let instance = pool.pick() else {
                throw RPCError(code: .unavailable, message: "no processing instance is serving; try again")
            }
            instance.begin()
            defer { instance.end() }
            do {
                return try await call.relay(source, client: instance.client.rpc, writer: writer)
            } catch let error as RPCError where error.code == .unavailable && attempts < 3 && source.replayable && !call.responded {
                pool.markFailed(instance)
                logger.info("retrying on another processing instance", metadata: [LogKey.requestID: "\(call.requestID)"])
            }
        }
    }
}

extension ForwardingService {
    /// The instance that owns the job a GetJob, GetJobResult or Cancel request names (all three carry the job ID
    /// as field 1). NOT_FOUND when no instance has that ID; UNAVAILABLE when it is not serving now.
    fileprivate func jobOwner(_ source: RequestSource, call: Call, pool: ProcessingPool) async throws -> ProcessingPool.Instance {
        guard let first = try await source.message(at: 0, limit: call.admission.maxMessageBytes) else {
            throw RPCError(code: .invalidArgument, message: "a unary call needs exactly one request message")
        }
        let request = try first.withUnsafeBytes { try Atrium_V1_GetJobRequest(serializedBytes: Array($0)) }
        let jobID = request.jobID
        guard let at = jobID.lastIndex(of: "@"), let instance = pool.instance(reporting: String(jobID[jobID.index(after: at)...])) else {
            throw RPCError(code: .notFound, message: "job '\(jobID.prefix(160))' not found")
        }
        guard instance.healthy else {
            throw RPCError(code: .unavailable, message: "the processing instance that owns job '\(jobID)' is not serving right now; try again")
        }
        return instance
    }

    /// ListJobs over every serving instance, merged newest first. The page token is a keyset position
    /// (creation time and job ID) that each instance reads the same way, so pages of the merge are exact. Jobs
    /// of an instance that is down are missing until it is back.
    fileprivate func listJobs(_ source: RequestSource, call: Call, pool: ProcessingPool, writer: RPCWriter<GRPCNIOTransportBytes>) async throws -> Metadata {
        guard let first = try await source.message(at: 0, limit: call.admission.maxMessageBytes) else {
            throw RPCError(code: .invalidArgument, message: "a unary call needs exactly one request message")
        }
        try await call.meter(first.count)
        let request = try first.withUnsafeBytes { try Atrium_V1_ListJobsRequest(serializedBytes: Array($0)) }
        let instances = pool.inRotation()
        guard !instances.isEmpty else { throw RPCError(code: .unavailable, message: "no processing instance is serving; try again") }
        let pages = try await withThrowingTaskGroup(of: Atrium_V1_ListJobsResponse.self) { group in
            for instance in instances {
                group.addTask {
                    instance.begin()
                    defer { instance.end() }
                    return try await instance.client.processing.listJobs(request, metadata: call.metadata, options: call.options)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let size = request.page.pageSize == 0 ? 100 : Int(request.page.pageSize)
        func micros(_ job: Atrium_V1_ProcessingJob) -> Int64 { job.createdAt.seconds * 1_000_000 + Int64(job.createdAt.nanos / 1000) }
        let merged = pages.flatMap { $0.jobs }.sorted { micros($0) != micros($1) ? micros($0) > micros($1) : $0.jobID < $1.jobID }
        var response = Atrium_V1_ListJobsResponse()
        response.jobs = Array(merged.prefix(size))
        if merged.count > size || pages.contains(where: { !$0.nextPageToken.isEmpty }), let last = response.jobs.last {
            response.nextPageToken = "\(micros(last))/\(last.jobID)"
        }
        let bytes: [UInt8] = try response.serializedBytes()
        try await call.meter(bytes.count)
        try await writer.write(bytes.withUnsafeBytes { GRPCNIOTransportBytes($0) })
        return [:]
    }
}

/// One admitted call on its way to a backend.
private final class Call: Sendable {
    let requestID: String
    let method: MethodDescriptor
    let metadata: Metadata
    let options: CallOptions
    let admission: Admission
    let limiter: RateLimiter
    private let reauthorize: @Sendable () async throws -> Void
    private let state = Mutex<(responded: Bool, refusal: RPCError?, checked: ContinuousClock.Instant)>((false, nil, .now))

    /// How often an open stream's authorization is checked again (against the gateway's cache, so cheap):
    /// revocation reaches a stream within the cache TTL plus this.
    static let recheckInterval = Duration.seconds(1)

    init(
        requestID: String,
        method: MethodDescriptor,
        metadata: Metadata,
        options: CallOptions,
        admission: Admission,
        limiter: RateLimiter,
        reauthorize: @escaping @Sendable () async throws -> Void
    ) {
        self.requestID = requestID
        self.method = method
        self.metadata = metadata
        self.options = options
        self.admission = admission
        self.limiter = limiter
        self.reauthorize = reauthorize
    }

    /// Whether any response message has reached the caller.
    var responded: Bool { state.withLock { $0.responded } }

    /// Checks the caller's authorization again when the last check is older than ``recheckInterval``, then
    /// takes byte tokens for one message, waiting while the caller is above its byte rate.
    func meter(_ count: Int) async throws {
        let due = state.withLock { state in
            guard state.checked.duration(to: .now) >= Self.recheckInterval else { return false }
            state.checked = .now
            return true
        }
        if due, admission.caller != nil {
            do {
                try await reauthorize()
            } catch let error as RPCError {
                state.withLock { $0.refusal = error }
                throw error
            }
        }
        guard let wait = limiter.take(bytes: count, admission.limiterKey, limits: admission.limits) else {
            throw RPCError(
                code: .resourceExhausted,
                message: "byte rate limit of \(Int(admission.limits.bytesPerSecond)) bytes/s exceeded"
            )
        }
        if wait > .zero { try await Task.sleep(for: wait) }
    }

    /// A unary call as a plain unary client call: one message each way, without the request-producer task and
    /// response stream that a streaming call costs (the common case, and the one latency matters for).
    func relayUnary(_ source: RequestSource, client: any RPCClient, writer: RPCWriter<GRPCNIOTransportBytes>) async throws -> Metadata {
        guard let message = try await source.message(at: 0, limit: admission.maxMessageBytes) else {
            throw RPCError(code: .invalidArgument, message: "a unary call needs exactly one request message")
        }
        try await meter(message.count)
        let (reply, trailers) = try await client.unary(
            request: ClientRequest(message: message, metadata: metadata),
            descriptor: method,
            serializer: PassthroughCoder(),
            deserializer: PassthroughCoder(),
            options: options
        ) { response in
            (try response.message, response.trailingMetadata)
        }
        try await meter(reply.count)
        state.withLock { $0.responded = true }
        try await writer.write(reply)
        return trailers.forwardable
    }

    /// One attempt against one backend client.
    func relay(_ source: RequestSource, client: any RPCClient, writer: RPCWriter<GRPCNIOTransportBytes>) async throws -> Metadata {
        if method.type == .unary { return try await relayUnary(source, client: client, writer: writer) }
        // The message-size cap is enforced here, not only by the transport, so that an oversized message gets a
        // RESOURCE_EXHAUSTED status instead of a reset stream.
        let limit = admission.maxMessageBytes
        let forwarded = StreamingClientRequest<GRPCNIOTransportBytes>(metadata: metadata) { backendWriter in
            var index = 0
            while let message = try await source.message(at: index, limit: limit) {
                do {
                    try await self.meter(message.count)
                } catch let error as RPCError {
                    self.state.withLock { $0.refusal = error }
                    throw error
                }
                try await backendWriter.write(message)
                index += 1
            }
        }
        do {
            return try await client.bidirectionalStreaming(
                request: forwarded,
                descriptor: method,
                serializer: PassthroughCoder(),
                deserializer: PassthroughCoder(),
                options: options
            ) { response in
                let contents = try response.accepted.get()
                var trailers = Metadata()
                for try await part in contents.bodyParts {
                    switch part {
                    case .message(let message):
                        try await self.meter(message.count)
                        self.state.withLock { $0.responded = true }
                        try await writer.write(message)
                    case .trailingMetadata(let metadata): trailers = metadata
                    }
                }
                return trailers.forwardable
            }
        } catch {
            if let refused = source.refusal ?? state.withLock({ $0.refusal }) { throw refused }
            throw error
        }
    }
}

/// The caller's request messages, read once, with the first one kept so that it can be sent again.
///
/// Only one attempt reads at a time: a retry starts after the previous attempt ended, and only while nothing
/// past the first message was consumed (so no attempt is left waiting on the caller's stream).
private final class RequestSource: @unchecked Sendable {
    private var iterator: RPCAsyncSequence<GRPCNIOTransportBytes, any Error>.AsyncIterator
    private var first: GRPCNIOTransportBytes??
    private let lock = Mutex<(beyondFirst: Bool, refusal: RPCError?)>((false, nil))

    init(_ messages: RPCAsyncSequence<GRPCNIOTransportBytes, any Error>) {
        self.iterator = messages.makeAsyncIterator()
    }

    /// Whether only the first message has been consumed, so the call can be replayed.
    var replayable: Bool { lock.withLock { !$0.beyondFirst } }

    /// A size refusal raised while reading.
    var refusal: RPCError? { lock.withLock { $0.refusal } }

    /// Reads and keeps the first message.
    func prime(limit: Int) async throws {
        _ = try await message(at: 0, limit: limit)
    }

    /// The message at `index`, or `nil` at the end of the stream.
    func message(at index: Int, limit: Int) async throws -> GRPCNIOTransportBytes? {
        let message: GRPCNIOTransportBytes?
        if index == 0 {
            if let first { return first }
            message = try await iterator.next()
            first = .some(message)
        } else {
            lock.withLock { $0.beyondFirst = true }
            message = try await iterator.next()
        }
        if let message, message.count > limit {
            let error = RPCError(code: .resourceExhausted, message: "a message of \(message.count) bytes exceeds the \(limit)-byte limit")
            lock.withLock { $0.refusal = error }
            throw error
        }
        return message
    }
}

/// Deadlines for forwarding.
enum Forwarding {
    /// The caller's deadline from `grpc-timeout` (`<1–8 digits><H|M|S|m|u|n>`), if any.
    static func timeout(in metadata: Metadata) -> Duration? {
        // The gRPC spec allows at most 8 digits, which keeps every product below within Int64.
        guard let text = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }), (2...9).contains(text.utf8.count),
            text.dropLast().allSatisfy(\.isASCII), let amount = Int64(text.dropLast()), amount >= 0
        else { return nil }
        switch text.last {
        case "H": return .seconds(amount * 3600)
        case "M": return .seconds(amount * 60)
        case "S": return .seconds(amount)
        case "m": return .milliseconds(amount)
        case "u": return .microseconds(amount)
        case "n": return .nanoseconds(amount)
        default: return nil
        }
    }
}
