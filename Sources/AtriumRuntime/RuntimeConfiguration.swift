public import AtriumCore
public import Logging
public import AtriumTransport

/// Settings every Atrium process shares, read from `ATRIUM_*` keys (environment or env-file).
///
/// Keys:
/// - `ATRIUM_LISTEN_HOST`: the address to bind (default `127.0.0.1`; `0.0.0.0` in containers).
/// - `ATRIUM_PORT`: the port to bind (default: the service's, see ``ServiceName/defaultPort``; `0` picks a free one).
/// - `ATRIUM_PORT_FILE`: when set, the bound port is written there once listening (used by tests and `atrium up`).
/// - `ATRIUM_DATA_DIR`: the root of durable state (default `./var`); each service keeps `<root>/<service>/`.
/// - `ATRIUM_BLOB_DIR`: the registry's blob store, shared read-only with delivery and processing (default `<data>/registry/blobs`).
/// - `ATRIUM_PKI_DIR`: the TLS material laid out by ``DevelopmentPKI`` (default `<data>/pki`).
/// - `ATRIUM_TLS_CA`, `ATRIUM_TLS_CERT`, `ATRIUM_TLS_KEY` (secret): explicit files instead of the PKI directory's.
/// - `ATRIUM_SECURITY_ADDR`, `ATRIUM_REGISTRY_ADDR`, `ATRIUM_DELIVERY_ADDR`, `ATRIUM_CATALOG_ADDR`,
///   `ATRIUM_BACKUP_ADDR`: `host:port` of each backend (default `127.0.0.1:<its default port>`).
/// - `ATRIUM_PROCESSING_ADDRS`: comma-separated `host:port` list of processing instances, or one DNS name
///   that resolves to several (default `127.0.0.1:7504`).
/// - `ATRIUM_MAX_MESSAGE_BYTES`: the largest gRPC message accepted (default 4 MiB, 64 KiB to 64 MiB).
/// - `ATRIUM_LOG_LEVEL`: `trace` ... `critical` (default `info`); `ATRIUM_LOG_FORMAT`: `json` or `text` (default `text`).
public struct RuntimeConfiguration: Sendable {
    /// Which service this process runs.
    public var service: ServiceName
    /// Where it listens.
    public var listen: HostAndPort
    /// Where it writes its bound port, if anywhere.
    public var portFile: String?
    /// The root of durable state.
    public var dataDirectory: String
    /// The registry's content-addressed blob store (`ATRIUM_BLOB_DIR`, default `<data>/registry/blobs`): the
    /// registry writes it, delivery and processing open it read-only. One key for all three, read here.
    public var blobDirectory: String
    /// The TLS files of this process (its certificate is its identity towards other services).
    public var tls: TLSFiles
    /// The addresses of the other services.
    public var peers: [ServiceName: [HostAndPort]]
    /// The largest gRPC message accepted, in bytes.
    public var maxMessageBytes: Int
    /// The log level.
    public var logLevel: Logger.Level
    /// The log line format.
    public var logFormat: LineLogHandler.Format

    /// This service's own data directory, `<data>/<service>`.
    public var serviceDirectory: String { "\(dataDirectory)/\(service)" }

    /// The first configured address of `peer`.
    public func address(of peer: ServiceName) -> HostAndPort {
        peers[peer]?.first ?? HostAndPort(host: "127.0.0.1", port: peer.defaultPort)
    }

    /// Reads the configuration of `service` from `values`.
    public init(service: ServiceName, values: ConfigValues) throws(ConfigurationError) {
        self.service = service
        let host = values.string("ATRIUM_LISTEN_HOST", default: "127.0.0.1")
        let port = try values.int("ATRIUM_PORT", default: service.defaultPort, range: 0...65535)
        self.listen = HostAndPort(host: host, port: port)
        self.portFile = values.string("ATRIUM_PORT_FILE")
        self.dataDirectory = values.string("ATRIUM_DATA_DIR", default: "./var")
        self.blobDirectory = values.string("ATRIUM_BLOB_DIR", default: "\(dataDirectory)/registry/blobs")
        let pki = values.string("ATRIUM_PKI_DIR", default: "\(dataDirectory)/pki")
        let defaults = TLSFiles.service(service, in: pki)
        self.tls = TLSFiles(
            caPath: values.string("ATRIUM_TLS_CA", default: defaults.caPath),
            certificatePath: values.string("ATRIUM_TLS_CERT", default: defaults.certificatePath),
            keyPath: values.string("ATRIUM_TLS_KEY", default: defaults.keyPath)
        )
        var peers: [ServiceName: [HostAndPort]] = [:]
        for peer in ServiceName.allCases where peer != .gateway {
            let fallback = HostAndPort(host: "127.0.0.1", port: peer.defaultPort)
            if peer == .processing {
                peers[peer] = try values.addresses("ATRIUM_PROCESSING_ADDRS", default: [fallback])
            } else {
                peers[peer] = [try values.address("ATRIUM_\(peer.rawValue.uppercased())_ADDR", default: fallback)!]
            }
        }
        self.peers = peers
        self.maxMessageBytes = try values.int("ATRIUM_MAX_MESSAGE_BYTES", default: 4 << 20, range: (64 << 10)...(64 << 20))
        let level = values.string("ATRIUM_LOG_LEVEL", default: "info")
        guard let logLevel = Logger.Level(rawValue: level) else {
            throw ConfigurationError(key: "ATRIUM_LOG_LEVEL", problem: "expected trace, debug, info, notice, warning, error or critical")
        }
        self.logLevel = logLevel
        let format = values.string("ATRIUM_LOG_FORMAT", default: "text")
        guard let logFormat = LineLogHandler.Format(rawValue: format) else {
            throw ConfigurationError(key: "ATRIUM_LOG_FORMAT", problem: "expected json or text")
        }
        self.logFormat = logFormat
    }
}
