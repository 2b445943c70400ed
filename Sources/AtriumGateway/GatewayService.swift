public import AtriumCore
public import AtriumRuntime
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle

/// The gateway's settings.
///
/// Keys (besides the runtime's): `ATRIUM_GATEWAY_AUTH_CACHE_MS`: the longest time an authorization decision
/// is cached (default 5000; 0 disables the cache).
public struct GatewayConfiguration: Sendable {
    /// The longest time a decision is reused.
    public var authorizationCacheTTL: Duration

    /// Settings from the process configuration.
    public init(values: ConfigValues) throws(ConfigurationError) {
        authorizationCacheTTL = .milliseconds(try values.int("ATRIUM_GATEWAY_AUTH_CACHE_MS", default: 5000, range: 0...60_000))
    }
}

/// Builds the gateway process: one client per backend (mTLS with the gateway's certificate) and the
/// forwarding service. The public listener uses TLS; callers authenticate with an API key.
public struct Gateway: Sendable {
    /// The gRPC services the gateway's server registers.
    public let rpcServices: [any RegistrableRPCService]
    /// The background services the process must run (the backend clients' connections).
    public let clientRunners: [any Service]

    /// The transport's own limit on a message for the gateway's listener: above the enforced cap, so that the
    /// gateway can answer an oversized message with RESOURCE_EXHAUSTED rather than a reset stream.
    public static func transportMessageLimit(for cap: Int) -> Int {
        min(cap * 4, 64 << 20)
    }

    /// Wires the gateway to the backends named in `runtime`.
    public init(runtime: RuntimeConfiguration, configuration: GatewayConfiguration, logger: Logger) throws {
        var backends: [ServiceName: GRPCClient<HTTP2ClientTransport.Posix>] = [:]
        for backend in ServiceName.allCases where backend != .gateway {
            backends[backend] = try ClientFactory.makeClient(to: runtime.address(of: backend), security: .mutualTLS(runtime.tls))
        }
        let authenticator = Authenticator(security: backends[.security]!, maximumTTL: configuration.authorizationCacheTTL, logger: logger)
        self.rpcServices = [
            ForwardingService(authenticator: authenticator, backends: backends, maxMessageBytes: runtime.maxMessageBytes, logger: logger)
        ]
        self.clientRunners = backends.values.map { ClientRunner($0) }
    }
}
