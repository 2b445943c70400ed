public import AtriumAPI
public import GRPCCore

public import GRPCNIOTransportHTTP2


/// The four calls of a gRPC client, whatever its transport. `GRPCClient` has exactly these, so any client
/// conforms; the gateway relays opaque messages through it.
public protocol RPCClient: Sendable {
    func unary<Request, Response, ReturnValue: Sendable>(
        request: ClientRequest<Request>,
        descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>,
        deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: ClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue

    func clientStreaming<Request, Response, ReturnValue: Sendable>(
        request: StreamingClientRequest<Request>,
        descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>,
        deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: ClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue

    func serverStreaming<Request, Response, ReturnValue: Sendable>(
        request: ClientRequest<Request>,
        descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>,
        deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: StreamingClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue

    func bidirectionalStreaming<Request, Response, ReturnValue: Sendable>(
        request: StreamingClientRequest<Request>,
        descriptor: MethodDescriptor,
        serializer: some MessageSerializer<Request>,
        deserializer: some MessageDeserializer<Response>,
        options: CallOptions,
        onResponse handleResponse: @Sendable @escaping (_ response: StreamingClientResponse<Response>) async throws -> ReturnValue
    ) async throws -> ReturnValue
}

extension GRPCClient: RPCClient {}

/// A client of another Atrium service: over HTTP/2 with mTLS when the service is another process, or in-process
/// when it runs in this one (`atrium serve all`). Services see only the generated client protocols this hands
/// out; which case a service gets is decided in one place, ``ServiceWiring``.
public enum Connection: Sendable {
    /// Another process, over HTTP/2.
    case http2(GRPCClient<HTTP2ClientTransport.Posix>)
    /// A service in this process: no TLS, no HTTP/2, no socket.
    case inProcess(GRPCClient<LocalLink.Client>)

    /// The untyped client (the gateway's relay).
    public var rpc: any RPCClient {
        switch self {
        case .http2(let client): client
        case .inProcess(let client): client
        }
    }

    /// Runs the client's connections until ``beginGracefulShutdown()``.
    public func runConnections() async throws {
        switch self {
        case .http2(let client): try await client.runConnections()
        case .inProcess(let client): try await client.runConnections()
        }
    }

    /// Lets the client's calls finish and closes it.
    public func beginGracefulShutdown() {
        switch self {
        case .http2(let client): client.beginGracefulShutdown()
        case .inProcess(let client): client.beginGracefulShutdown()
        }
    }

    public var securityInternal: any Atrium_V1_SecurityInternal.ClientProtocol {
        switch self {
        case .http2(let client): Atrium_V1_SecurityInternal.Client(wrapping: client)
        case .inProcess(let client): Atrium_V1_SecurityInternal.Client(wrapping: client)
        }
    }

    public var registryInternal: any Atrium_V1_RegistryInternal.ClientProtocol {
        switch self {
        case .http2(let client): Atrium_V1_RegistryInternal.Client(wrapping: client)
        case .inProcess(let client): Atrium_V1_RegistryInternal.Client(wrapping: client)
        }
    }

    public var deliveryInternal: any Atrium_V1_DeliveryInternal.ClientProtocol {
        switch self {
        case .http2(let client): Atrium_V1_DeliveryInternal.Client(wrapping: client)
        case .inProcess(let client): Atrium_V1_DeliveryInternal.Client(wrapping: client)
        }
    }

    public var processing: any Atrium_V1_Processing.ClientProtocol {
        switch self {
        case .http2(let client): Atrium_V1_Processing.Client(wrapping: client)
        case .inProcess(let client): Atrium_V1_Processing.Client(wrapping: client)
        }
    }

    public var processingInternal: any Atrium_V1_ProcessingInternal.ClientProtocol {
        switch self {
        case .http2(let client): Atrium_V1_ProcessingInternal.Client(wrapping: client)
        case .inProcess(let client): Atrium_V1_ProcessingInternal.Client(wrapping: client)
        }
    }

    public var health: any Grpc_Health_V1_Health.ClientProtocol {
        switch self {
        case .http2(let client): Grpc_Health_V1_Health.Client(wrapping: client)
        case .inProcess(let client): Grpc_Health_V1_Health.Client(wrapping: client)
        }
    }
}
