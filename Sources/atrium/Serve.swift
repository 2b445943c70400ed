public import ArgumentParser
import AtriumAPI
import AtriumBackup
import AtriumCatalog
public import AtriumCore
import AtriumDelivery
import AtriumGateway
import AtriumProcessing
import AtriumRegistry
import AtriumRuntime
import AtriumSecurity
import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import UnixSignals

extension ServiceName: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one Atrium process until SIGTERM or SIGINT.",
        discussion: "Configuration comes from ATRIUM_* environment variables and the env-file named by ATRIUM_CONFIG_FILE; see docs/operations.md."
    )

    @Argument(help: "The service: \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var service: ServiceName

    func run() async throws {
        let values = try ConfigValues.fromEnvironment(ProcessInfo.processInfo.environment)
        let runtime = try RuntimeConfiguration(service: service, values: values)
        LineLogHandler.bootstrap(level: runtime.logLevel, format: runtime.logFormat)
        var logger = Logger(label: "atrium.\(service)")
        logger[metadataKey: LogKey.service] = "\(service)"
        let assembly = try ServiceAssembly(service: service, runtime: runtime, values: values, logger: logger)
        let health = HealthStatus(services: assembly.healthNames)
        let server = GRPCServerService(
            name: service.rawValue,
            listen: runtime.listen,
            security: service == .gateway ? .tls(runtime.tls) : .mutualTLS(runtime.tls),
            services: assembly.rpcServices,
            interceptors: assembly.peerChecks,
            health: health,
            maxMessageBytes: service == .gateway ? Gateway.transportMessageLimit(for: runtime.maxMessageBytes) : runtime.maxMessageBytes,
            compression: service == .gateway,
            portFile: runtime.portFile,
            logger: logger
        )
        var servers: [any Service] = [server]
        if let listen = assembly.mutualTLSListen {
            // The gateway's client-certificate door: same services, but the TLS handshake requires a certificate
            // that chains to the client CA; the forwarding service then maps it to a subscriber.
            servers.append(
                GRPCServerService(
                    name: "\(service)-mtls",
                    listen: listen,
                    security: .mutualTLS(TLSFiles(caPath: assembly.clientCAPath, certificatePath: runtime.tls.certificatePath, keyPath: runtime.tls.keyPath)),
                    services: assembly.rpcServices,
                    health: health,
                    maxMessageBytes: Gateway.transportMessageLimit(for: runtime.maxMessageBytes),
                    portFile: runtime.portFile.map { $0 + ".mtls" },
                    logger: logger
                )
            )
        }
        // Services stop in reverse order: the servers drain first, then the clients they used close.
        let group = ServiceGroup(
            configuration: .init(
                services: assembly.background.map { .init(service: $0) } + servers.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}

/// What one process serves and runs. `atrium serve` and the tests' in-process set-ups share this.
struct ServiceAssembly {
    let service: ServiceName
    var rpcServices: [any RegistrableRPCService]
    var background: [any Service] = []
    var healthNames: [String]
    /// Which services may call each internal service; every other peer gets UNAUTHENTICATED.
    var internalCallers: [(service: ServiceDescriptor, callers: Set<ServiceName>)] = []
    /// Interceptors a service adds after the peer checks.
    var extraInterceptors: [ConditionalInterceptor<any ServerInterceptor>] = []
    /// The gateway's client-certificate listener and the CA its clients must chain to.
    var mutualTLSListen: HostAndPort?
    var clientCAPath = ""

    /// Backends accept only Atrium service certificates, and each internal service only the services that use it.
    /// The gateway's public listener has no peer checks: its callers authenticate with credentials.
    var peerChecks: [ConditionalInterceptor<any ServerInterceptor>] {
        guard service != .gateway else { return [] }
        return [.apply(ServicePeerInterceptor(), to: .all)]
            + internalCallers.map { .apply(ServicePeerInterceptor(allowed: $0.callers), to: .services([$0.service])) }
            + extraInterceptors
    }

    init(service: ServiceName, runtime: RuntimeConfiguration, values: ConfigValues, logger: Logger) throws {
        self.service = service
        switch service {
        case .gateway:
            let configuration = try GatewayConfiguration(runtime: runtime, values: values)
            let gateway = try Gateway(runtime: runtime, configuration: configuration, logger: logger)
            rpcServices = gateway.rpcServices
            background = gateway.background
            mutualTLSListen = configuration.mutualTLSListen
            clientCAPath = configuration.clientCAPath
            healthNames = []
        case .security:
            let security = try SecurityService(configuration: SecurityConfiguration(runtime: runtime, values: values), logger: logger)
            rpcServices = security.rpcServices
            healthNames = [Atrium_V1_SecurityAdmin.descriptor, Atrium_V1_Account.descriptor, Atrium_V1_SecurityInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_SecurityInternal.descriptor, Set(ServiceName.allCases).subtracting([.security]))]
        case .registry:
            let security = try ClientFactory.makeClient(to: runtime.address(of: .security), security: .mutualTLS(runtime.tls))
            let delivery = try ClientFactory.makeClient(to: runtime.address(of: .delivery), security: .mutualTLS(runtime.tls))
            let registry = try RegistryService(
                configuration: RegistryConfiguration(runtime: runtime, values: values),
                security: security,
                delivery: delivery,
                logger: logger
            )
            rpcServices = registry.rpcServices
            background = [ClientRunner(security), ClientRunner(delivery)] + registry.background
            healthNames = [Atrium_V1_Registry.descriptor, Atrium_V1_RegistryInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_RegistryInternal.descriptor, [.delivery, .processing, .backup])]
        case .delivery:
            let registry = try ClientFactory.makeClient(to: runtime.address(of: .registry), security: .mutualTLS(runtime.tls))
            let security = try ClientFactory.makeClient(to: runtime.address(of: .security), security: .mutualTLS(runtime.tls))
            // Delivery reads the registry's blob store read-only, once the registry has said the caller may see
            // an image (ARCHITECTURE.md §2), and keeps its variants in a store of its own.
            let delivery = try DeliveryService(
                configuration: DeliveryConfiguration(runtime: runtime, values: values),
                registry: registry,
                security: security,
                logger: logger
            )
            rpcServices = delivery.rpcServices
            background = [ClientRunner(registry), ClientRunner(security)] + delivery.background
            healthNames = [Atrium_V1_Delivery.descriptor, Atrium_V1_DeliveryInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_DeliveryInternal.descriptor, [.processing, .registry])]
        case .processing:
            let registry = try ClientFactory.makeClient(to: runtime.address(of: .registry), security: .mutualTLS(runtime.tls))
            let security = try ClientFactory.makeClient(to: runtime.address(of: .security), security: .mutualTLS(runtime.tls))
            let delivery = try ClientFactory.makeClient(to: runtime.address(of: .delivery), security: .mutualTLS(runtime.tls))
            // Processing reads stored inputs from the registry's blob store read-only, once the registry has said
            // the caller may see them, and keeps its jobs and results in a state directory of its own.
            // The other instances (the gateway's list, this one included): a batch is split across them.
            let addresses = runtime.peers[.processing] ?? []
            let tls = ClientSecurity.mutualTLS(runtime.tls)
            let peers = addresses.isEmpty
                ? nil
                : ProcessingPool(addresses: addresses, logger: logger) { endpoint in
                    try ClientFactory.makeClient(to: endpoint.address, security: tls, authority: ClientFactory.isIPLiteral(endpoint.name) ? nil : endpoint.name)
                }
            let processing = try ProcessingService(
                configuration: ProcessingConfiguration(runtime: runtime, values: values),
                registry: registry,
                security: security,
                delivery: delivery,
                peers: peers,
                logger: logger
            )
            rpcServices = processing.rpcServices
            background = [ClientRunner(registry), ClientRunner(security), ClientRunner(delivery)] + processing.background
            extraInterceptors = processing.interceptors
            healthNames = [Atrium_V1_Processing.descriptor, Atrium_V1_ProcessingInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_ProcessingInternal.descriptor, [.gateway, .processing])]
        case .catalog:
            rpcServices = CatalogService().rpcServices
            healthNames = [Atrium_V1_Catalog.descriptor, Atrium_V1_CatalogInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_CatalogInternal.descriptor, [.backup])]
        case .backup:
            rpcServices = BackupService().rpcServices
            healthNames = [Atrium_V1_Backup.descriptor].map(\.fullyQualifiedService)
        }
    }
}
