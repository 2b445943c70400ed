import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import Testing

@Suite("The caller interceptor resolves the gateway's identity once per call")
struct CallerInterceptorTests {
    /// Collects what a response producer writes.
    private struct Collector: RPCWriterProtocol {
        func write(_ element: String) async throws {}
        func write(contentsOf elements: some Sequence<String>) async throws {}
    }

    private let method = MethodDescriptor(fullyQualifiedService: "atrium.v1.Registry", method: "ListImages")

    /// Runs `handler` behind ``CallerInterceptor`` as a call from `peer` with `metadata`, then runs the
    /// response's producer, as a server does for a streaming response.
    private func call(
        from peer: ServiceName?,
        metadata: Metadata,
        handler: @escaping @Sendable () throws -> Void
    ) async throws {
        try await withServerContextRPCCancellationHandle { cancellation in
            let context = ServerContext(descriptor: method, remotePeer: "in-process:test", localPeer: "in-process:test", cancellation: cancellation)
            let request = StreamingServerRequest<String>(metadata: metadata, messages: RPCAsyncSequence(wrapping: AsyncThrowingStream { $0.finish() }))
            let intercepted: @Sendable (StreamingServerRequest<String>, ServerContext) async throws -> StreamingServerResponse<String> = { request, context in
                try await CallerInterceptor().intercept(request: request, context: context) { _, _ in
                    try handler()
                    return StreamingServerResponse { _ in
                        try handler()
                        return [:]
                    }
                }
            }
            // The peer is set as an in-process link sets it, by the interceptor in front.
            let response = if let peer {
                try await InProcessPeerInterceptor(caller: peer).intercept(request: request, context: context, next: intercepted)
            } else {
                try await intercepted(request, context)
            }
            _ = try await response.accepted.get().producer(RPCWriter(wrapping: Collector()))
        }
    }

    @Test("a handler and its streaming response read the caller the gateway sent")
    func resolvesFromGateway() async throws {
        let sent = VerifiedCaller(subscriberID: "sub-1", kind: .hospital, roles: [.register, .receive], requestID: "req-1")
        try await call(from: .gateway, metadata: sent.metadata) {
            let caller = try VerifiedCaller.current()
            #expect(caller == sent)
        }
    }

    @Test("identity from a peer that is not the gateway is refused where a handler asks for it, and only there")
    func refusesOtherPeers() async throws {
        let sent = VerifiedCaller(subscriberID: "sub-1", kind: .hospital, roles: [.register], requestID: "req-1")
        for peer in [ServiceName.registry, nil] {
            try await call(from: peer, metadata: sent.metadata) {}
            await #expect(throws: RPCError.self) {
                try await call(from: peer, metadata: sent.metadata) { _ = try VerifiedCaller.current() }
            }
        }
        let error = await #expect(throws: RPCError.self) {
            try await call(from: .gateway, metadata: [:]) { _ = try VerifiedCaller.current() }
        }
        #expect(error?.code == .unauthenticated)
    }

    @Test("outside an intercepted call there is no caller, and saying so is an internal error")
    func missingInterceptor() {
        let error = #expect(throws: RPCError.self) { try VerifiedCaller.current() }
        #expect(error?.code == .internalError)
    }
}
