import AtriumAPI
import AtriumRuntime
import GRPCCore
import GRPCInProcessTransport
import SwiftProtobuf
import Testing

@Suite("Health service and stubs over an in-process transport")
struct HealthAndStubTests {
    private func withServer(
        _ services: [any RegistrableRPCService],
        health: HealthStatus? = nil,
        _ body: (GRPCClient<InProcessTransport.Client>) async throws -> Void
    ) async throws {
        let transport = InProcessTransport()
        let server = GRPCServer(transport: transport.server, services: services)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            try await withGRPCClient(transport: transport.client) { client in
                try await body(client)
            }
            health?.shutDown()
            server.beginGracefulShutdown()
        }
    }

    @Test("health reports NOT_SERVING until the process is ready, then SERVING, then NOT_SERVING while draining")
    func lifecycle() async throws {
        let status = HealthStatus(services: ["atrium.v1.Registry"])
        try await withServer([HealthService(status: status)]) { (client: GRPCClient<InProcessTransport.Client>) async throws in
            let health = Grpc_Health_V1_Health.Client(wrapping: client)
            #expect(try await health.check(.with { $0.service = "" }).status == .notServing)
            status.setServing(true)
            #expect(try await health.check(.with { $0.service = "" }).status == .serving)
            #expect(try await health.check(.with { $0.service = "atrium.v1.Registry" }).status == .serving)
            await #expect { try await health.check(.with { $0.service = "atrium.v1.Nope" }) } throws: {
                ($0 as? RPCError)?.code == .notFound
            }
            status.setServing(false)
            #expect(try await health.check(.with { $0.service = "" }).status == .notServing)
        }
    }

    @Test("Watch sends the current status at once and every change after it")
    func watch() async throws {
        let status = HealthStatus(services: [])
        try await withServer([HealthService(status: status)], health: status) { (client: GRPCClient<InProcessTransport.Client>) async throws in
            let health = Grpc_Health_V1_Health.Client(wrapping: client)
            try await health.watch(.with { $0.service = "" }) { response in
                var seen: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
                for try await message in response.messages {
                    seen.append(message.status)
                    if seen.count == 1 { status.setServing(true) }
                    if seen.count == 2 { status.setServing(false) }
                    if seen.count == 3 { break }
                }
                #expect(seen == [.notServing, .serving, .notServing])
            }
            // Shutting down ends a watch that is still open, after a last NOT_SERVING.
            status.setServing(true)
            try await health.watch(.with { $0.service = "" }) { response in
                var seen: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
                for try await message in response.messages {
                    seen.append(message.status)
                    if seen.count == 1 { status.shutDown() }
                }
                #expect(seen == [.serving, .notServing])
            }
        }
    }

    @Test("a stub answers UNIMPLEMENTED naming the method and the work that delivers it")
    func stub() async throws {
        let stub = UnimplementedService(methods: Atrium_V1_Processing.Method.descriptors, subject: "the processing issue (#6)")
        try await withServer([stub]) { (client: GRPCClient<InProcessTransport.Client>) async throws in
            await #expect {
                try await Atrium_V1_Processing.Client(wrapping: client).getJob(.with { $0.jobID = "job_x" })
            } throws: { error in
                let error = error as? RPCError
                return error?.code == .unimplemented && error?.message.contains("atrium.v1.Processing/GetJob") == true
                    && error?.message.contains("#6") == true
            }
        }
    }

    @Test("caller identity survives the metadata round trip the gateway and backends use")
    func callerMetadata() throws {
        let caller = VerifiedCaller(subscriberID: "sub_a", kind: .individual, roles: [.receive, .register], patientIDs: ["P1", "P2"], requestID: "req_1")
        let message = caller.message
        #expect(try VerifiedCaller(message: message) == caller)
        #expect(caller.metadata[stringValues: AtriumMetadata.roles].first(where: { _ in true }) == "receive,register")
        #expect(throws: RPCError.self) { try VerifiedCaller(message: .init()) }
    }
}
