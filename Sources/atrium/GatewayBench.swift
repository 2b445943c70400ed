import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumCore
import AtriumGateway
import AtriumRuntime
import AtriumSecurity
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceLifecycle
import AtriumTransport

/// What the gateway adds to a call: `atrium bench gateway`.
struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Measure the latency the gateway adds to a unary call, and its authorization-cache hit rate.",
        discussion: """
            Runs, in this process and on loopback, a backend that answers Account/WhoAmI at once (next to the real
            SecurityInternal service that the gateway asks), and the real gateway in front of it. Times --calls
            sequential WhoAmI calls straight to the backend and through the gateway, once in plaintext and once with
            TLS (mTLS to the backend), and as one process runs it (TLS to the gateway, an in-process link to the \
            backend; direct: the backend behind TLS of its own), and prints p50/p99 for each and the gateway's added \
            p50/p99. Then runs 4
            concurrent clients, each with its own API key, for --seconds through the gateway and prints the
            authorization cache's hit rate. One JSON object per line.
            """
    )

    @Option(help: "Sequential calls per measurement (after 10% as warm-up).") var calls = 2000
    @Option(help: "Seconds of the 4-client cache run.") var seconds = 5

    func run() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("atrium-gwbench-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let pki = "\(directory)/pki"
        try DevelopmentPKI.ensure(directory: pki)
        let databasePath = SecurityConfiguration.databasePath(dataDirectory: directory)
        var keys: [String] = []
        for index in 0..<4 {
            keys.append(
                try SecurityService.createSubscriber(databasePath: databasePath, displayName: "Bench \(index)", kind: .hospital, contract: Atrium_V1_Contract()).apiKey
            )
        }
        var logger = Logger(label: "atrium.bench")
        logger.logLevel = .critical
        let security = try SecurityService(configuration: SecurityConfiguration(databasePath: databasePath), logger: logger)

        for tls in [false, true] {
            let backendTLS = TLSFiles.service(.security, in: pki)
            let backend = try await LocalServer.start(
                services: [security.internalService, StandInAccount()],
                security: tls ? .mutualTLS(backendTLS) : .plaintext,
                directory: directory,
                name: "backend-\(tls)",
                logger: logger
            )
            var values = [
                "ATRIUM_PKI_DIR": pki, "ATRIUM_DATA_DIR": directory, "ATRIUM_SECURITY_ADDR": "127.0.0.1:\(backend.port)",
                "ATRIUM_PROCESSING_ADDRS": "127.0.0.1:1", "ATRIUM_GATEWAY_MTLS_PORT": "off",
            ]
            values["ATRIUM_PORT"] = "0"
            let config = ConfigValues(values)
            let runtime = try RuntimeConfiguration(service: .gateway, values: config)
            let gatewayFiles = TLSFiles.service(.gateway, in: pki)
            let gateway = try Gateway(
                runtime: runtime,
                configuration: try GatewayConfiguration(runtime: runtime, values: config),
                logger: logger,
                backendSecurity: tls ? .mutualTLS(gatewayFiles) : .plaintext
            )
            let front = try await LocalServer.start(
                services: gateway.rpcServices,
                security: tls ? .tls(gatewayFiles) : .plaintext,
                directory: directory,
                name: "gateway-\(tls)",
                background: gateway.background,
                logger: logger
            )
            let transport = tls ? "tls" : "plaintext"
            let caller = VerifiedCaller(subscriberID: "sub_bench", kind: .hospital, roles: [.receive], requestID: "req_bench")
            // The floor: a proxy that only relays WhoAmI, with no authorization, limits or audit.
            let bareClient = try ClientFactory.makeClient(
                to: HostAndPort(host: "127.0.0.1", port: backend.port),
                security: tls ? .mutualTLS(gatewayFiles) : .plaintext
            )
            let bare = try await LocalServer.start(
                services: [BareProxy(client: bareClient, identity: caller.metadata)],
                security: tls ? .tls(gatewayFiles) : .plaintext,
                directory: directory,
                name: "bare-\(tls)",
                background: [ClientRunner(bareClient)],
                logger: logger
            )
            let direct = try await timeCalls(
                to: HostAndPort(host: "127.0.0.1", port: backend.port),
                security: tls ? .mutualTLS(gatewayFiles) : .plaintext,
                metadata: caller.metadata
            )
            let viaGateway = try await timeCalls(
                to: HostAndPort(host: "127.0.0.1", port: front.port),
                security: tls ? .tls(caPath: "\(pki)/ca.pem") : .plaintext,
                metadata: ["authorization": "Bearer \(keys[0])"]
            )
            let viaBare = try await timeCalls(
                to: HostAndPort(host: "127.0.0.1", port: bare.port),
                security: tls ? .tls(caPath: "\(pki)/ca.pem") : .plaintext,
                metadata: [:]
            )
            report([
                "phase": "gateway-latency", "transport": transport, "calls": calls,
                "direct_p50_us": direct.p50, "direct_p99_us": direct.p99,
                "gateway_p50_us": viaGateway.p50, "gateway_p99_us": viaGateway.p99,
                "added_p50_us": viaGateway.p50 - direct.p50, "added_p99_us": viaGateway.p99 - direct.p99,
                "bare_proxy_p50_us": viaBare.p50, "bare_proxy_p99_us": viaBare.p99,
            ])
            if tls {
                let before = gateway.authorizationCacheStatistics
                let total = try await concurrentCalls(
                    to: HostAndPort(host: "127.0.0.1", port: front.port),
                    caPath: "\(pki)/ca.pem",
                    keys: keys
                )
                let after = gateway.authorizationCacheStatistics
                let hits = after.hits - before.hits, misses = after.misses - before.misses
                report([
                    "phase": "auth-cache", "clients": keys.count, "seconds": seconds, "calls": total,
                    "calls_per_second": Int(Double(total) / Double(seconds)), "hits": hits, "misses": misses,
                    "hit_rate": Double(hits) / Double(max(1, hits + misses)),
                ])
            }
            await bare.stop()
            await front.stop()
            await backend.stop()
        }
        try await oneProcess(directory: directory, pki: pki, keys: keys, security: security, logger: logger)
    }

    /// The one-process case (`atrium serve all`): the client reaches the gateway over TLS, and the gateway reaches
    /// the backend over an in-process link; "direct" is the same backend behind a TLS listener of its own.
    private func oneProcess(directory: String, pki: String, keys: [String], security: SecurityService, logger: Logger) async throws {
        let link = LocalLink()
        let backendServer = GRPCServer(
            transport: link.server,
            services: [security.internalService, StandInAccount()],
            interceptorPipeline: [.apply(InProcessPeerInterceptor(caller: .gateway), to: .all)]
        )
        let backendTask = Task { try await backendServer.serve() }
        defer { backendServer.beginGracefulShutdown() }
        let values = ConfigValues([
            "ATRIUM_PKI_DIR": pki, "ATRIUM_DATA_DIR": directory, "ATRIUM_PORT": "0", "ATRIUM_GATEWAY_MTLS_PORT": "off",
        ])
        let runtime = try RuntimeConfiguration(service: .gateway, values: values)
        let gatewayFiles = TLSFiles.service(.gateway, in: pki)
        let gateway = try Gateway(
            runtime: runtime,
            configuration: try GatewayConfiguration(runtime: runtime, values: values),
            backends: [.security: .inProcess(GRPCClient(transport: link.client))],
            pool: nil,
            logger: logger
        )
        let front = try await LocalServer.start(
            services: gateway.rpcServices, security: .tls(gatewayFiles), directory: directory, name: "gateway-one", background: gateway.background, logger: logger
        )
        let caller = VerifiedCaller(subscriberID: "sub_bench", kind: .hospital, roles: [.receive], requestID: "req_bench")
        let backend = try await LocalServer.start(
            services: [StandInAccount()], security: .tls(gatewayFiles), directory: directory, name: "backend-one", logger: logger
        )
        let direct = try await timeCalls(to: HostAndPort(host: "127.0.0.1", port: backend.port), security: .tls(caPath: "\(pki)/ca.pem"), metadata: caller.metadata)
        let viaGateway = try await timeCalls(
            to: HostAndPort(host: "127.0.0.1", port: front.port), security: .tls(caPath: "\(pki)/ca.pem"), metadata: ["authorization": "Bearer \(keys[0])"]
        )
        report([
            "phase": "gateway-latency", "transport": "one-process", "calls": calls,
            "direct_p50_us": direct.p50, "direct_p99_us": direct.p99,
            "gateway_p50_us": viaGateway.p50, "gateway_p99_us": viaGateway.p99,
            "added_p50_us": viaGateway.p50 - direct.p50, "added_p99_us": viaGateway.p99 - direct.p99,
            "bare_proxy_p50_us": 0, "bare_proxy_p99_us": 0,
        ])
        await backend.stop()
        await front.stop()
        backendServer.beginGracefulShutdown()
        try await backendTask.value
    }

    private func report(_ fields: [String: any Sendable]) {
        let data = try? JSONSerialization.data(withJSONObject: fields.mapValues { $0 as Any }, options: [.sortedKeys])
        print(String(decoding: data ?? Data(), as: UTF8.self))
    }

    /// p50 and p99 of `calls` sequential WhoAmI calls, in microseconds, after a warm-up.
    private func timeCalls(to address: HostAndPort, security: ClientSecurity, metadata: Metadata) async throws -> (p50: Int, p99: Int) {
        try await ClientFactory.withClient(to: address, security: security) { client in
            let account = Atrium_V1_Account.Client(wrapping: client)
            for _ in 0..<max(1, calls / 10) { _ = try await account.whoAmI(.init(), metadata: metadata) }
            var samples: [Int] = []
            samples.reserveCapacity(calls)
            for _ in 0..<calls {
                let started = ContinuousClock.now
                _ = try await account.whoAmI(.init(), metadata: metadata)
                let elapsed = ContinuousClock.now - started
                samples.append(Int(elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
            }
            samples.sort()
            return (samples[samples.count / 2], samples[min(samples.count - 1, samples.count * 99 / 100)])
        }
    }

    /// Runs one client per key, each calling as fast as it can for `seconds`; returns the calls made.
    private func concurrentCalls(to address: HostAndPort, caPath: String, keys: [String]) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(seconds)
        return try await withThrowingTaskGroup(of: Int.self) { group in
            for key in keys {
                group.addTask {
                    try await ClientFactory.withClient(to: address, security: .tls(caPath: caPath)) { client in
                        let account = Atrium_V1_Account.Client(wrapping: client)
                        var count = 0
                        while ContinuousClock.now < deadline {
                            _ = try await account.whoAmI(.init(), metadata: ["authorization": "Bearer \(key)"])
                            count += 1
                        }
                        return count
                    }
                }
            }
            return try await group.reduce(0, +)
        }
    }
}

/// A backend that answers WhoAmI at once from the identity metadata, so that the figures are the gateway's
/// cost, not a database's.
private struct StandInAccount: Atrium_V1_Account.ServiceProtocol {
    func whoAmI(request: ServerRequest<Atrium_V1_WhoAmIRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Subscriber> {
        let id = request.metadata[stringValues: AtriumMetadata.subscriber].first(where: { _ in true }) ?? ""
        return ServerResponse(message: .with { $0.subscriberID = id })
    }

    private func unused(_ context: ServerContext) -> RPCError {
        RPCError(code: .unimplemented, message: "\(context.descriptor) is not part of the benchmark")
    }

    func enroll(request: ServerRequest<Atrium_V1_EnrollRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_EnrollResponse> { throw unused(context) }
    func getUsage(request: ServerRequest<Atrium_V1_GetUsageRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Usage> { throw unused(context) }
    func getStatement(request: ServerRequest<Atrium_V1_GetStatementRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_Statement> { throw unused(context) }
    func quote(request: ServerRequest<Atrium_V1_QuoteRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_QuoteResponse> { throw unused(context) }
    func listNotifications(request: ServerRequest<Atrium_V1_ListNotificationsRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListNotificationsResponse> { throw unused(context) }
    func listAccesses(request: ServerRequest<Atrium_V1_ListAccessesRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_QueryAuditLogResponse> { throw unused(context) }
}

/// The least a gRPC proxy does with grpc-swift: receive WhoAmI, call the backend with a plain unary call, reply.
/// Its latency is the floor under the gateway's.
private struct BareProxy: RegistrableRPCService {
    let client: GRPCClient<HTTP2ClientTransport.Posix>
    let identity: Metadata

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let method = Atrium_V1_Account.Method.WhoAmI.descriptor
        router.registerHandler(forMethod: method, deserializer: RawBytesCoder(), serializer: RawBytesCoder()) { request, _ in
            var message: [UInt8] = []
            for try await part in request.messages { message = part }
            let reply = try await client.unary(
                request: ClientRequest(message: message, metadata: identity),
                descriptor: method,
                serializer: RawBytesCoder(),
                deserializer: RawBytesCoder(),
                options: .defaults
            ) { try $0.message }
            return StreamingServerResponse(single: ServerResponse(message: reply))
        }
    }
}

/// A server run in this process for the benchmark, on an ephemeral loopback port.
private struct LocalServer {
    let port: Int
    private let task: Task<Void, any Error>

    static func start(
        services: [any RegistrableRPCService],
        security: ServerSecurity,
        directory: String,
        name: String,
        background: [any Service] = [],
        logger: Logger
    ) async throws -> LocalServer {
        let portFile = "\(directory)/\(name).port"
        let server = GRPCServerService(
            name: name,
            listen: HostAndPort(host: "127.0.0.1", port: 0),
            security: security,
            services: services,
            health: HealthStatus(services: []),
            maxMessageBytes: 4 << 20,
            portFile: portFile,
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(services: background.map { .init(service: $0) } + [.init(service: server)], logger: logger)
        )
        let task = Task { try await group.run() }
        for _ in 0..<400 {
            if let port = PortFile.read(portFile) { return LocalServer(port: port, task: task) }
            try await Task.sleep(for: .milliseconds(25))
        }
        task.cancel()
        throw CLIError("the \(name) server did not start")
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }
}
