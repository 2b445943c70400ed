import AtriumAPI
import AtriumBackup
import AtriumCatalog
public import AtriumCore
public import Foundation
public import AtriumDelivery
import AtriumGateway
import AtriumProcessing
import AtriumRegistry
public import AtriumRuntime
import AtriumSecurity
public import GRPCCore
public import Logging
public import ServiceLifecycle

/// What one service serves and runs, built over the ``ServiceWiring`` that says how it reaches the others. The
/// same function builds every service for `atrium serve <service>` (one process each, mTLS between them) and
/// for `atrium serve all` (one process, in-process calls): only the wiring differs.
public struct ServiceAssembly {
    /// The service.
    public let service: ServiceName
    /// Its gRPC services.
    public var rpcServices: [any RegistrableRPCService]
    /// What must run beside its server: its clients' connections, outboxes, the audit trail, schedulers.
    public var background: [any Service] = []
    /// The gRPC service names its health status reports.
    public var healthNames: [String]
    /// Which services may call each internal service; every other peer gets UNAUTHENTICATED.
    public var internalCallers: [(service: ServiceDescriptor, callers: Set<ServiceName>)] = []
    /// Interceptors a service adds after the peer checks.
    public var extraInterceptors: [ConditionalInterceptor<any ServerInterceptor>] = []
    /// The gateway's client-certificate listener and the CA its clients must chain to.
    public var mutualTLSListen: HostAndPort?
    public var clientCAPath = ""
    /// Delivery's data plane, when it has one.
    public var dataPlane: BytePlane?
    /// The registry's uploads, for a data plane to take (``UploadIntake``).
    public var uploadIntake: (any UploadIntake)?
    /// The registry's own upload plane's settings, for when it runs as its own process.
    var registryConfiguration: RegistryConfiguration?

    /// Backends accept only Atrium services, and each internal service only the services that use it; then
    /// ``CallerInterceptor`` resolves the gateway's caller identity once for the handlers. The gateway's
    /// public listener has no peer checks: its callers authenticate with credentials.
    public var peerChecks: [ConditionalInterceptor<any ServerInterceptor>] {
        guard service != .gateway else { return [] }
        return [.apply(ServicePeerInterceptor(), to: .all)]
            + internalCallers.map { .apply(ServicePeerInterceptor(allowed: $0.callers), to: .services([$0.service])) }
            + [.apply(CallerInterceptor(), to: .all)]
            + extraInterceptors
    }

    /// Builds `service` from its configuration, reaching the other services through `wiring`.
    /// `now` is the clock of the services that keep time (security, registry, delivery, processing): the system
    /// clock, or a test's.
    public init(
        service: ServiceName,
        runtime: RuntimeConfiguration,
        values: ConfigValues,
        wiring: any ServiceWiring,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.service = service
        var connections: [Connection] = []
        /// A connection from this service to `callee`, run with this service's background.
        func connect(_ callee: ServiceName) throws -> Connection {
            let connection = try wiring.connection(from: service, to: callee)
            connections.append(connection)
            return connection
        }
        switch service {
        case .gateway:
            let configuration = try GatewayConfiguration(runtime: runtime, values: values)
            let pool = try wiring.processingPool(for: .gateway, probeInterval: configuration.probeInterval, resolveInterval: configuration.resolveInterval, logger: logger)
            var backends: [ServiceName: Connection] = [:]
            for backend in ServiceName.allCases where backend != .gateway && (backend != .processing || pool == nil) {
                backends[backend] = try connect(backend)
            }
            let gateway = try Gateway(runtime: runtime, configuration: configuration, backends: backends, pool: pool, logger: logger)
            rpcServices = gateway.rpcServices
            background = gateway.background
            connections = []  // the gateway runs its own
            mutualTLSListen = configuration.mutualTLSListen
            clientCAPath = configuration.clientCAPath
            healthNames = []
        case .security:
            let security = try SecurityService(configuration: SecurityConfiguration(runtime: runtime, values: values), logger: logger, now: now)
            rpcServices = security.rpcServices
            healthNames = [Atrium_V1_SecurityAdmin.descriptor, Atrium_V1_Account.descriptor, Atrium_V1_SecurityInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_SecurityInternal.descriptor, Set(ServiceName.allCases).subtracting([.security]))]
        case .registry:
            let configuration = try RegistryConfiguration(runtime: runtime, values: values)
            let registry = try RegistryService(
                configuration: configuration,
                security: try connect(.security),
                delivery: try connect(.delivery),
                logger: logger,
                now: now
            )
            rpcServices = registry.rpcServices
            background = registry.background
            uploadIntake = registry.uploadIntake
            registryConfiguration = configuration
            healthNames = [Atrium_V1_Registry.descriptor, Atrium_V1_RegistryInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_RegistryInternal.descriptor, [.delivery, .processing, .backup])]
        case .delivery:
            // Delivery reads the registry's blob store read-only, once the registry has said the caller may see
            // an image (ARCHITECTURE.md §2), and keeps its variants in a store of its own.
            let delivery = try DeliveryService(
                configuration: DeliveryConfiguration(runtime: runtime, values: values),
                registry: try connect(.registry),
                security: try connect(.security),
                logger: logger,
                now: now
            )
            rpcServices = delivery.rpcServices
            background = delivery.background
            dataPlane = delivery.bytePlane
            healthNames = [Atrium_V1_Delivery.descriptor, Atrium_V1_DeliveryInternal.descriptor].map(\.fullyQualifiedService)
            internalCallers = [(Atrium_V1_DeliveryInternal.descriptor, [.processing, .registry])]
        case .processing:
            // Processing reads stored inputs from the registry's blob store read-only, once the registry has said
            // the caller may see them, and keeps its jobs and results in a state directory of its own. A batch is
            // split across the instances of its pool (this one included), when it has one.
            let processing = try ProcessingService(
                configuration: ProcessingConfiguration(runtime: runtime, values: values),
                registry: try connect(.registry),
                security: try connect(.security),
                delivery: try connect(.delivery),
                peers: try wiring.processingPool(for: .processing, probeInterval: .seconds(1), resolveInterval: .seconds(10), logger: logger),
                logger: logger,
                now: now
            )
            rpcServices = processing.rpcServices
            background = processing.background
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
        // Services stop in reverse order: the outboxes and trails flush before the connections they use close.
        background = connections.map { ClientRunner($0) as any Service } + background
    }
}
