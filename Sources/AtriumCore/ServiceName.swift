/// The processes of the Atrium mesh. Every process is the same executable, `atrium serve <service>`.
public enum ServiceName: String, CaseIterable, Sendable, Hashable, CustomStringConvertible {
    case gateway
    case security
    case registry
    case delivery
    case processing
    case catalog
    case backup

    /// The port a service listens on when nothing else is configured (`atrium up` and compose use these).
    public var defaultPort: Int {
        switch self {
        case .gateway: 7443
        case .security: 7501
        case .registry: 7502
        case .delivery: 7503
        case .processing: 7504
        case .catalog: 7506
        case .backup: 7507
        }
    }

    /// The gateway's second public port, where subscribers present a client certificate instead of an API key.
    public static let gatewayMutualTLSPort = 7444

    /// Delivery's data plane: HTTPS range requests for image bytes, with capabilities from `AuthorizeFetch`.
    public static let deliveryBytesPort = 7445
    /// The registry's upload data plane when it runs as its own process: HTTPS POSTs with capabilities from
    /// `AuthorizeUpload` (in the one process, delivery's data plane takes them).
    public static let registryUploadPort = 7446

    /// The URI that identifies this service in the subject alternative name of its certificate.
    public var certificateURI: String { "atrium://service/\(rawValue)" }

    public var description: String { rawValue }

    /// The service named by a certificate URI SAN `atrium://service/<name>`, if it is one.
    public init?(certificateURI uri: String) {
        let prefix = "atrium://service/"
        guard uri.hasPrefix(prefix) else { return nil }
        self.init(rawValue: String(uri.dropFirst(prefix.count)))
    }
}
