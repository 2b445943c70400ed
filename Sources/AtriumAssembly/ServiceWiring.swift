public import AtriumCore
import Foundation
import GRPCCore
public import AtriumRuntime
public import Logging
public import ServiceLifecycle
import AtriumTransport
public import AtriumPool

/// How one service reaches another: the one place that decides which transport a client uses.
public protocol ServiceWiring: Sendable {
    /// A client for `caller` to call `callee`.
    func connection(from caller: ServiceName, to callee: ServiceName) throws -> Connection

    /// The processing instances `caller` spreads work over (the gateway its calls, a processing instance its
    /// batches), or `nil` to call processing as one service through ``connection(from:to:)``.
    func processingPool(for caller: ServiceName, probeInterval: Duration, resolveInterval: Duration, logger: Logger) throws -> ProcessingPool?
}

/// Every service its own process: HTTP/2 with mTLS, presenting the caller's certificate, to the addresses the
/// runtime configuration names; processing as a pool of instances.
public struct NetworkWiring: ServiceWiring {
    private let runtime: RuntimeConfiguration

    public init(runtime: RuntimeConfiguration) {
        self.runtime = runtime
    }

    public func connection(from caller: ServiceName, to callee: ServiceName) throws -> Connection {
        try ClientFactory.makeConnection(to: runtime.address(of: callee), security: .mutualTLS(runtime.tls))
    }

    public func processingPool(for caller: ServiceName, probeInterval: Duration, resolveInterval: Duration, logger: Logger) throws -> ProcessingPool? {
        let addresses = runtime.peers[.processing] ?? []
        guard !addresses.isEmpty else { return nil }
        let security = ClientSecurity.mutualTLS(runtime.tls)
        return ProcessingPool(addresses: addresses, resolveInterval: resolveInterval, probeInterval: probeInterval, logger: logger) { endpoint in
            // An address given as a name keeps that name for TLS verification.
            try ClientFactory.makeConnection(to: endpoint.address, security: security, authority: ClientFactory.isIPLiteral(endpoint.name) ? nil : endpoint.name)
        }
    }
}

/// Every service in this process (`atrium serve all`): each caller-callee pair gets its own in-process link,
/// with no TLS, no HTTP/2 and no socket; the callee's server on that link marks every call with the caller
/// (``InProcessPeerInterceptor``), which is how a backend knows who calls it, as a certificate tells it between
/// processes. Processing is one instance here, called like any other service.
public final class InProcessWiring: ServiceWiring, @unchecked Sendable {
    private struct Link {
        let caller: ServiceName
        let callee: ServiceName
        let transport: LocalLink
    }

    private let lock = NSLock()
    private var links: [Link] = []

    public init() {}

    public func connection(from caller: ServiceName, to callee: ServiceName) throws -> Connection {
        let transport = LocalLink()
        lock.withLock { links.append(Link(caller: caller, callee: callee, transport: transport)) }
        return .inProcess(GRPCClient(transport: transport.client))
    }

    public func processingPool(for caller: ServiceName, probeInterval: Duration, resolveInterval: Duration, logger: Logger) throws -> ProcessingPool? {
        nil
    }

    /// One server per link handed out so far, serving the callee's services with its peer checks.
    public func servers(for assemblies: [ServiceName: ServiceAssembly]) throws -> [any Service] {
        try lock.withLock { links }.map { link in
            guard let callee = assemblies[link.callee] else {
                throw ConfigurationError(key: "\(link.callee)", problem: "\(link.caller) calls it, but it is not part of this process")
            }
            let server = GRPCServer(
                transport: link.transport.server,
                services: callee.rpcServices,
                interceptorPipeline: [.apply(InProcessPeerInterceptor(caller: link.caller), to: .all)] + callee.peerChecks
            )
            return InProcessServer(server: server)
        }
    }
}

/// Runs one in-process server until graceful shutdown, then lets its calls finish.
struct InProcessServer: Service {
    let server: GRPCServer<LocalLink.Server>

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await server.serve()
        } onGracefulShutdown: {
            server.beginGracefulShutdown()
        }
    }
}
