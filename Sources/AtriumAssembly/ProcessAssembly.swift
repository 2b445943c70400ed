public import AtriumCore
public import Foundation
import AtriumDelivery
import AtriumGateway
import AtriumRegistry
public import AtriumRuntime
public import Logging
public import ServiceLifecycle
import AtriumTransport

/// What an `atrium serve` process runs, in `ServiceGroup` order (services stop in reverse order).
public enum ProcessAssembly {
    /// `atrium serve <service>`: one service, its own listener (mTLS for backends, TLS and client certificates for
    /// the gateway), calling the others over the network.
    public static func single(_ service: ServiceName, runtime: RuntimeConfiguration, values: ConfigValues, logger: Logger) throws -> [any Service] {
        let assembly = try ServiceAssembly(service: service, runtime: runtime, values: values, wiring: NetworkWiring(runtime: runtime), logger: logger)
        let health = HealthStatus(services: assembly.healthNames)
        let listeners: [any Service]
        if service == .gateway {
            listeners = gatewayListeners(assembly, runtime: runtime, health: health, logger: logger)
        } else {
            listeners = [
                GRPCServerService(
                    name: service.rawValue,
                    listen: runtime.listen,
                    security: .mutualTLS(runtime.tls),
                    services: assembly.rpcServices,
                    interceptors: assembly.peerChecks,
                    health: health,
                    maxMessageBytes: runtime.maxMessageBytes,
                    compression: false,
                    portFile: runtime.portFile,
                    logger: logger
                )
            ]
        }
        // The registry in its own process takes uploads on a data plane of its own (in the one process, delivery's
        // plane takes them).
        var planes: [any Service] = []
        if service == .registry, let configuration = assembly.registryConfiguration, let listen = configuration.uploadListen, let intake = assembly.uploadIntake {
            planes.append(
                BytePlane.uploads(
                    listen: listen, portFile: configuration.uploadPortFile, tls: configuration.uploadTLS, baseURL: configuration.uploadBaseURL,
                    intake: intake, logger: logger
                )
            )
        }
        // The servers drain first, then the clients they used close.
        return assembly.background + planes + listeners
    }

    /// The services of `atrium serve all`, in start order.
    public static let allServices: [ServiceName] = [.security, .registry, .delivery, .processing, .catalog, .backup, .gateway]

    /// `atrium serve all`: every service in this process, calling each other in-process; only the gateway's
    /// listeners are open. `runtime` is the gateway's (its port, TLS files and limits).
    public static func all(runtime: RuntimeConfiguration, values: ConfigValues, logger: Logger) throws -> [any Service] {
        let inside = try InProcessAssembly(runtime: runtime, values: values, logger: logger)
        // Stop order (the reverse): the public listeners drain, then every service's outboxes and trails flush
        // through links that are still up, and the links close last.
        return inside.services + gatewayListeners(inside.gateway, runtime: runtime, health: inside.health, logger: logger)
    }

    /// The gateway's public listener (TLS, API keys) and, when enabled, its client-certificate listener.
    static func gatewayListeners(_ gateway: ServiceAssembly, runtime: RuntimeConfiguration, health: HealthStatus, logger: Logger) -> [any Service] {
        var listeners: [any Service] = [
            GRPCServerService(
                name: "gateway",
                listen: runtime.listen,
                security: .tls(runtime.tls),
                services: gateway.rpcServices,
                health: health,
                maxMessageBytes: Gateway.transportMessageLimit(for: runtime.maxMessageBytes),
                compression: true,
                portFile: runtime.portFile,
                logger: logger
            )
        ]
        if let listen = gateway.mutualTLSListen {
            // The client-certificate door: same services, but the TLS handshake requires a certificate that chains
            // to the client CA; the forwarding service then maps it to a subscriber.
            listeners.append(
                GRPCServerService(
                    name: "gateway-mtls",
                    listen: listen,
                    security: .mutualTLS(TLSFiles(caPath: gateway.clientCAPath, certificatePath: runtime.tls.certificatePath, keyPath: runtime.tls.keyPath)),
                    services: gateway.rpcServices,
                    health: health,
                    maxMessageBytes: Gateway.transportMessageLimit(for: runtime.maxMessageBytes),
                    portFile: runtime.portFile.map { $0 + ".mtls" },
                    logger: logger
                )
            )
        }
        return listeners
    }
}

/// Every service built in this process over in-process links, without any listener: what `atrium serve all` runs
/// behind the gateway's listeners, and what tests run to call the services in milliseconds, without processes,
/// ports or TLS.
public struct InProcessAssembly {
    /// The services of the process, in `ServiceGroup` order: the links' servers first (they stop last), then
    /// every service's background.
    public let services: [any Service]
    /// The gateway, for its listeners.
    public let gateway: ServiceAssembly
    /// The health of every service of the process.
    public let health: HealthStatus
    /// A client link to the gateway's services, when asked for (tests): calls on it are admitted by their
    /// credentials, as on the gateway's public listener.
    public let client: Connection?

    /// Builds every service (see ``ProcessAssembly/allServices``) from `values`; `runtime` is the gateway's.
    public init(runtime: RuntimeConfiguration, values: ConfigValues, logger: Logger, clientLink: Bool = false, now: @escaping @Sendable () -> Date = { Date() }) throws {
        let wiring = InProcessWiring()
        var assemblies: [ServiceName: ServiceAssembly] = [:]
        for service in ProcessAssembly.allServices {
            var serviceLogger = logger
            serviceLogger[metadataKey: LogKey.service] = "\(service)"
            let serviceRuntime = service == .gateway ? runtime : try RuntimeConfiguration(service: service, values: values)
            assemblies[service] = try ServiceAssembly(service: service, runtime: serviceRuntime, values: values, wiring: wiring, logger: serviceLogger, now: now)
        }
        // A link "from the gateway to itself" is the outside's way in: the gateway checks credentials, not peers.
        let client = clientLink ? try wiring.connection(from: .gateway, to: .gateway) : nil
        // The one data plane serves delivery's objects and takes the registry's uploads.
        if let plane = assemblies[.delivery]?.dataPlane, let intake = assemblies[.registry]?.uploadIntake { plane.accept(uploads: intake) }
        self.gateway = assemblies[.gateway]!
        self.health = HealthStatus(services: ProcessAssembly.allServices.flatMap { assemblies[$0]!.healthNames })
        self.client = client
        self.services = try wiring.servers(for: assemblies)
            + ProcessAssembly.allServices.flatMap { assemblies[$0]!.background }
            + (client.map { [ClientRunner($0) as any Service] } ?? [])
    }
}
