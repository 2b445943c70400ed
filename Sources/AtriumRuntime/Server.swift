public import AtriumCore
public import AtriumTransport
import Foundation
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle

/// How a listener protects its connections.
public enum ServerSecurity: Sendable {
    /// No TLS (tests and benchmarks only).
    case plaintext
    /// TLS with the given certificate; clients are not asked for one (the gateway's public listener).
    case tls(TLSFiles)
    /// TLS that requires a client certificate issued by the CA in `files` (every backend).
    case mutualTLS(TLSFiles)
}

/// Runs one gRPC server inside a `ServiceGroup`: binds, reports its port, flips health to SERVING, and on
/// graceful shutdown reports NOT_SERVING first, then drains in-flight calls.
public struct GRPCServerService: Service {
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let transport: HTTP2ServerTransport.Posix
    private let health: HealthStatus
    private let portFile: String?
    private let name: String
    private let logger: Logger

    /// A server for `services` (the health service is added here) on `listen`.
    public init(
        name: String,
        listen: HostAndPort,
        security: ServerSecurity,
        services: [any RegistrableRPCService],
        interceptors: [ConditionalInterceptor<any ServerInterceptor>] = [],
        health: HealthStatus,
        maxMessageBytes: Int,
        compression: Bool = true,
        portFile: String? = nil,
        logger: Logger
    ) {
        let transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case .tls(let files):
            transportSecurity = .tls(
                certificateChain: [.file(path: files.certificatePath, format: .pem)],
                privateKey: .file(path: files.keyPath, format: .pem)
            )
        case .mutualTLS(let files):
            transportSecurity = .mTLS(
                certificateChain: [.file(path: files.certificatePath, format: .pem)],
                privateKey: .file(path: files.keyPath, format: .pem)
            ) {
                $0.trustRoots = .certificates([.file(path: files.caPath, format: .pem)])
                $0.clientCertificateVerification = .noHostnameVerification
            }
        }
        let transport = HTTP2ServerTransport.Posix(
            address: listen.host.contains(":")
                ? .ipv6(host: listen.host, port: listen.port)
                : .ipv4(host: listen.host == "localhost" ? "127.0.0.1" : listen.host, port: listen.port),
            transportSecurity: transportSecurity,
            config: .defaults {
                $0.http2.targetWindowSize = TransportTuning.windowSize
                $0.http2.maxFrameSize = TransportTuning.maxFrameSize
                $0.rpc.maxRequestPayloadSize = maxMessageBytes
                // Only where clients may ask for it (the gateway's listeners): a backend that compressed its replies
                // to every caller advertising gzip would spend a core deflating image bytes on loopback links.
                $0.compression.enabledAlgorithms = compression ? .all : .none
            }
        )
        self.transport = transport
        self.server = GRPCServer(
            transport: transport,
            services: services + [HealthService(status: health)],
            interceptorPipeline: interceptors
        )
        self.health = health
        self.portFile = portFile
        self.name = name
        self.logger = logger
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await server.serve() }
                let address = try await transport.listeningAddress
                let port = address.ipv4?.port ?? address.ipv6?.port ?? 0
                if let portFile {
                    try PortFile.write(port: port, to: portFile)
                }
                health.setServing(true)
                logger.info("listening", metadata: ["service": "\(name)", "address": "\(address)", "port": "\(port)"])
                try await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            logger.info("draining", metadata: ["service": "\(name)"])
            health.shutDown()
            server.beginGracefulShutdown()
        }
    }
}

/// The file a server writes its bound port to, so that a parent process can find an ephemeral port.
public enum PortFile {
    /// Writes `port` atomically (temp file and rename), so a reader never sees a partial number.
    public static func write(port: Int, to path: String) throws {
        let temp = path + ".tmp"
        try Data("\(port)\n".utf8).write(to: URL(fileURLWithPath: temp))
        guard rename(temp, path) == 0 else { throw ConfigurationError(key: "ATRIUM_PORT_FILE", problem: "cannot write \(path)") }
    }

    /// The port in `path`, or `nil` when the file is absent or incomplete.
    public static func read(_ path: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
