public import AtriumCore
import AtriumGateway
public import AtriumRuntime
public import Logging
public import ServiceLifecycle

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
        // The servers drain first, then the clients they used close.
        return assembly.background + listeners
    }

    /// The services of `atrium serve all`, in start order.
    public static let allServices: [ServiceName] = [.security, .registry, .delivery, .processing, .catalog, .backup, .gateway]

    /// `atrium serve all`: every service in this process, calling each other in-process; only the gateway's
    /// listeners are open. `runtime` is the gateway's (its port, TLS files and limits).
    public static func all(runtime: RuntimeConfiguration, values: ConfigValues, logger: Logger) throws -> [any Service] {
        let wiring = InProcessWiring()
        var assemblies: [ServiceName: ServiceAssembly] = [:]
        for service in allServices {
            var serviceLogger = logger
            serviceLogger[metadataKey: LogKey.service] = "\(service)"
            let serviceRuntime = service == .gateway ? runtime : try RuntimeConfiguration(service: service, values: values)
            assemblies[service] = try ServiceAssembly(service: service, runtime: serviceRuntime, values: values, wiring: wiring, logger: serviceLogger)
        }
        let gateway = assemblies[.gateway]!
        // The gateway's health reports every service of the process.
        let health = HealthStatus(services: allServices.flatMap { assemblies[$0]!.healthNames })
        let links = try wiring.servers(for: assemblies)
        // Stop order (the reverse): the public listeners drain, then every service's outboxes and trails flush
        // through links that are still up, and the links close last.
        return links + allServices.flatMap { assemblies[$0]!.background } + gatewayListeners(gateway, runtime: runtime, health: health, logger: logger)
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
