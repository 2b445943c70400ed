public import AtriumCore
public import AtriumRuntime
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
public import AtriumTransport
import AtriumBackend
public import AtriumPool

/// The gateway's settings.
///
/// Keys (besides the runtime's):
/// - `ATRIUM_GATEWAY_AUTH_CACHE_MS`: the longest time an authorization decision is cached (default 5000;
///   0 disables the cache). Security may ask for less.
/// - `ATRIUM_GATEWAY_AUTH_FAILURES_PER_SECOND`, `ATRIUM_GATEWAY_AUTH_FAILURE_BURST`: failed authentications
///   allowed per remote address (default 10/s, bursts of 20); past them, that address's credentials that are not
///   in the cache are refused with RESOURCE_EXHAUSTED without asking security.
/// - `ATRIUM_GATEWAY_MTLS_PORT`: the port of the second public listener, where subscribers authenticate with
///   a client certificate from enrolment (default 7444; 0 picks a free one; `off` disables it). Its bound port
///   is written to `<ATRIUM_PORT_FILE>.mtls` when a port file is configured.
/// - `ATRIUM_GATEWAY_CLIENT_CA`: the CA that client certificates must chain to (default: `ATRIUM_TLS_CA`).
/// - `ATRIUM_PROCESSING_RESOLVE_MS`, `ATRIUM_PROCESSING_PROBE_MS`: how often processing addresses are
///   re-resolved (default 10000) and instances health-checked (default 1000).
public struct GatewayConfiguration: Sendable {
    /// The longest time a decision is reused.
    public var authorizationCacheTTL: Duration
    /// Failed authentications allowed per remote address (per second, and the burst) before the gateway refuses
    /// that address's uncached credentials with RESOURCE_EXHAUSTED without asking security.
    public var authenticationFailuresPerSecond: Int
    public var authenticationFailureBurst: Int
    /// The client-certificate listener, if enabled.
    public var mutualTLSListen: HostAndPort?
    /// Trust roots for client certificates.
    public var clientCAPath: String
    /// Processing pool timings.
    public var resolveInterval: Duration
    public var probeInterval: Duration

    /// Settings from the process configuration.
    public init(runtime: RuntimeConfiguration, values: ConfigValues) throws(ConfigurationError) {
        authorizationCacheTTL = .milliseconds(try values.int("ATRIUM_GATEWAY_AUTH_CACHE_MS", default: 5000, range: 0...60_000))
        authenticationFailuresPerSecond = try values.int("ATRIUM_GATEWAY_AUTH_FAILURES_PER_SECOND", default: 10, range: 1...1_000_000)
        authenticationFailureBurst = try values.int("ATRIUM_GATEWAY_AUTH_FAILURE_BURST", default: 20, range: 1...1_000_000)
        if values.string("ATRIUM_GATEWAY_MTLS_PORT") == "off" {
            mutualTLSListen = nil
        } else {
            let port = try values.int("ATRIUM_GATEWAY_MTLS_PORT", default: ServiceName.gatewayMutualTLSPort, range: 0...65535)
            mutualTLSListen = HostAndPort(host: runtime.listen.host, port: port)
        }
        clientCAPath = values.string("ATRIUM_GATEWAY_CLIENT_CA", default: runtime.tls.caPath)
        resolveInterval = .milliseconds(try values.int("ATRIUM_PROCESSING_RESOLVE_MS", default: 10_000, range: 100...3_600_000))
        probeInterval = .milliseconds(try values.int("ATRIUM_PROCESSING_PROBE_MS", default: 1000, range: 50...60_000))
    }
}

/// Builds the gateway process: one client per backend (mTLS with the gateway's certificate), the processing
/// pool, the audit trail, and the forwarding service. The public listener uses TLS and API keys; the second
/// listener requires a client certificate from the Atrium CA.
public struct Gateway: Sendable {
    /// The gRPC services the gateway's servers register.
    public let rpcServices: [any RegistrableRPCService]
    /// The background services the process must run: backend connections, the pool, the audit trail.
    public let background: [any Service]
    private let authenticator: Authenticator

    /// Authorization-cache hits and misses since start (the benchmark reports the hit rate).
    public var authorizationCacheStatistics: (hits: Int, misses: Int) { authenticator.cacheStatistics }

    /// The transport's own limit on a message for the gateway's listener: above the enforced cap, so that the
    /// gateway can answer an oversized message with RESOURCE_EXHAUSTED rather than a reset stream.
    public static func transportMessageLimit(for cap: Int) -> Int {
        min(cap * 4, 64 << 20)
    }

    /// Wires the gateway to the backends named in `runtime`, with mTLS presenting the gateway's certificate
    /// (`backendSecurity` overrides that for benchmarks that measure TLS's share of the cost).
    public init(runtime: RuntimeConfiguration, configuration: GatewayConfiguration, logger: Logger, backendSecurity: ClientSecurity? = nil) throws {
        let security = backendSecurity ?? .mutualTLS(runtime.tls)
        var backends: [ServiceName: Connection] = [:]
        for backend in ServiceName.allCases where backend != .gateway && backend != .processing {
            backends[backend] = try ClientFactory.makeConnection(to: runtime.address(of: backend), security: security)
        }
        let pool = ProcessingPool(
            addresses: runtime.peers[.processing] ?? [],
            resolveInterval: configuration.resolveInterval,
            probeInterval: configuration.probeInterval,
            logger: logger
        ) { endpoint in
            try ClientFactory.makeConnection(to: endpoint.address, security: security, authority: ClientFactory.isIPLiteral(endpoint.name) ? nil : endpoint.name)
        }
        try self.init(runtime: runtime, configuration: configuration, backends: backends, pool: pool, logger: logger)
    }

    /// Wires the gateway to `backends`, one connection per service (`.processing` among them when there is no
    /// `pool`), however they are reached.
    public init(runtime: RuntimeConfiguration, configuration: GatewayConfiguration, backends: [ServiceName: Connection], pool: ProcessingPool?, logger: Logger) throws {
        guard let security = backends[.security] else {
            throw ConfigurationError(key: "ATRIUM_SECURITY_ADDR", problem: "the gateway needs the security service")
        }
        let authenticator = Authenticator(
            security: security.securityInternal,
            maximumTTL: configuration.authorizationCacheTTL,
            failureLimits: RateLimits(
                requestsPerSecond: Double(configuration.authenticationFailuresPerSecond),
                requestBurst: Double(configuration.authenticationFailureBurst),
                bytesPerSecond: 0,
                byteBurst: 0
            ),
            defaultMaxMessageBytes: runtime.maxMessageBytes,
            logger: logger
        )
        let audit = AuditTrail(security: security.securityInternal, logger: logger)
        self.authenticator = authenticator
        self.rpcServices = [
            ForwardingService(authenticator: authenticator, limiter: RateLimiter(), backends: backends, pool: pool, audit: audit, logger: logger)
        ]
        // Listed in start order; they stop in reverse, so the audit trail flushes before the clients close.
        self.background = backends.values.map { ClientRunner($0) as any Service } + (pool.map { [$0 as any Service] } ?? []) + [audit]
    }
}
