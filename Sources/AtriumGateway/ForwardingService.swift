import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

/// The gateway's only service: every public method, authenticated and forwarded to its backend as a stream
/// of opaque messages, message by message, with no buffering of whole payloads.
///
/// Each call gets a request ID. The caller's credential headers and any `atrium-*` headers it sent are
/// removed, and the verified identity is added (see ``VerifiedCaller``); backends accept that identity
/// only because this process presents the gateway's certificate. Deadlines are passed on.
struct ForwardingService: RegistrableRPCService {
    private let authenticator: Authenticator
    private let backends: [ServiceName: GRPCClient<HTTP2ClientTransport.Posix>]
    private let maxMessageBytes: Int
    private let logger: Logger

    init(
        authenticator: Authenticator,
        backends: [ServiceName: GRPCClient<HTTP2ClientTransport.Posix>],
        maxMessageBytes: Int,
        logger: Logger
    ) {
        self.authenticator = authenticator
        self.backends = backends
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
    }

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        for (method, backend) in PublicRoutes.methods {
            guard let client = backends[backend] else { continue }
            router.registerHandler(forMethod: method, deserializer: PassthroughCoder(), serializer: PassthroughCoder()) { request, context in
                try await forward(request, method: method, to: client)
            }
        }
    }

    private func forward(
        _ request: StreamingServerRequest<GRPCNIOTransportBytes>,
        method: MethodDescriptor,
        to client: GRPCClient<HTTP2ClientTransport.Posix>
    ) async throws -> StreamingServerResponse<GRPCNIOTransportBytes> {
        let requestID = Identifier.make(prefix: "req")
        let caller: VerifiedCaller
        do {
            caller = try await authenticator.authenticate(metadata: request.metadata, method: method, requestID: requestID)
        } catch let error as RPCError {
            logger.info("refused", metadata: [LogKey.method: "\(method)", LogKey.requestID: "\(requestID)", LogKey.status: "\(error.code)"])
            throw error
        }
        var forwardedMetadata = request.metadata.forwardable
        forwardedMetadata.add(contentsOf: caller.metadata)
        let metadata = forwardedMetadata
        var callOptions = CallOptions.fastFailing
        callOptions.timeout = Forwarding.timeout(in: request.metadata)
        let options = callOptions
        let logger = self.logger
        return StreamingServerResponse { writer in
            do {
                return try await relay(request, metadata: metadata, options: options, method: method, client: client, writer: writer) {
                    logger.debug("forwarded", metadata: [LogKey.method: "\(method)", LogKey.requestID: "\(requestID)", LogKey.subscriberID: "\(caller.subscriberID)"])
                }
            } catch let error as RPCError {
                // A backend's error carries the headers of its response; pass on only the caller-visible ones,
                // or the pseudo-headers in them would make the trailers invalid and reset the stream.
                throw error.withoutTransportHeaders
            }
        }
    }

    private func relay(
        _ request: StreamingServerRequest<GRPCNIOTransportBytes>,
        metadata: Metadata,
        options: CallOptions,
        method: MethodDescriptor,
        client: GRPCClient<HTTP2ClientTransport.Posix>,
        writer: RPCWriter<GRPCNIOTransportBytes>,
        onSuccess: @escaping @Sendable () -> Void
    ) async throws -> Metadata {
        // The message-size cap is enforced here, not only by the transport, so that an oversized message gets a
        // RESOURCE_EXHAUSTED status instead of a reset stream.
        let limit = maxMessageBytes
        let refusal = Mutex<RPCError?>(nil)
        let forwarded = StreamingClientRequest<GRPCNIOTransportBytes>(metadata: metadata) { backendWriter in
            for try await message in request.messages {
                guard message.count <= limit else {
                    let error = RPCError(code: .resourceExhausted, message: "a message of \(message.count) bytes exceeds the \(limit)-byte limit")
                    refusal.withLock { $0 = error }
                    throw error
                }
                try await backendWriter.write(message)
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
                    case .message(let message): try await writer.write(message)
                    case .trailingMetadata(let metadata): trailers = metadata
                    }
                }
                onSuccess()
                return trailers.forwardable
            }
        } catch {
            if let refused = refusal.withLock({ $0 }) { throw refused }
            throw error
        }
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
