public import AtriumCore
public import GRPCCore
public import GRPCNIOTransportHTTP2

/// How a client protects its connection.
public enum ClientSecurity: Sendable {
    /// No TLS (tests and benchmarks only).
    case plaintext
    /// TLS, trusting the CA at `caPath`, presenting no certificate (subscribers with an API key).
    case tls(caPath: String)
    /// TLS presenting a client certificate (service-to-service, and enrolled subscribers).
    case mutualTLS(TLSFiles)
}

/// Makes gRPC clients with Atrium's transport settings. Services use it for every internal client, the SDK
/// for its connection to the gateway.
public enum ClientFactory {
    /// A client to `address`; `compression` asks for gzip on every message in both directions. Its connections run in ``ClientRunner`` (or `withGRPCClient`).
    public static func makeClient(
        to address: HostAndPort,
        security: ClientSecurity,
        compression: Bool = false,
        authority: String? = nil
    ) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        let transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case .tls(let caPath):
            transportSecurity = .tls {
                $0.trustRoots = .certificates([.file(path: caPath, format: .pem)])
            }
        case .mutualTLS(let files):
            transportSecurity = .mTLS(
                certificateChain: [.file(path: files.certificatePath, format: .pem)],
                privateKey: .file(path: files.keyPath, format: .pem)
            ) {
                $0.trustRoots = .certificates([.file(path: files.caPath, format: .pem)])
            }
        }
        let transport = try HTTP2ClientTransport.Posix(
            target: Self.target(address),
            transportSecurity: transportSecurity,
            config: .defaults {
                $0.http2.targetWindowSize = TransportTuning.windowSize
                $0.http2.maxFrameSize = TransportTuning.maxFrameSize
                $0.http2.authority = authority
                // Off unless asked for: image bytes barely compress, and gzip costs more CPU than it saves on
                // loopback and LAN links. Lossless pixel codecs are the delivery encodings instead.
                if compression {
                    $0.compression.algorithm = .gzip
                    $0.compression.enabledAlgorithms = .all
                }
                $0.backoff.initial = .milliseconds(100)
                $0.backoff.max = .seconds(2)
            }
        )
        return GRPCClient(transport: transport)
    }
}

extension ClientFactory {
    /// Runs `body` with a connected client to `address`, then closes the client and waits for its
    /// connections to end. For short-lived callers (the SDK, probes, tests); services use ``ClientRunner``.
    public static func withClient<Result: Sendable>(
        to address: HostAndPort,
        security: ClientSecurity,
        compression: Bool = false,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        let client = try makeClient(to: address, security: security, compression: compression)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.runConnections() }
            defer { client.beginGracefulShutdown() }
            return try await body(client)
        }
    }

    /// The resolver target for an address. IP literals get IP targets, because a DNS target would send the
    /// literal as the TLS server name, which TLS forbids (the connection would never come up).
    static func target(_ address: HostAndPort) -> any ResolvableTarget {
        if address.host.contains(":") { return .ipv6(address: address.host, port: address.port) }
        if isIPLiteral(address.host) { return .ipv4(address: address.host, port: address.port) }
        return .dns(host: address.host, port: address.port)
    }

    /// Whether `host` is an IPv4 or IPv6 literal rather than a name.
    public static func isIPLiteral(_ host: String) -> Bool {
        if host.contains(":") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil }
    }
}
