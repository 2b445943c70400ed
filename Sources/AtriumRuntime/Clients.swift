public import AtriumCore
public import AtriumTransport
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import ServiceLifecycle

extension ClientFactory {
    /// A ``Connection`` over HTTP/2 to `address` (see ``makeClient(to:security:compression:authority:)``).
    public static func makeConnection(to address: HostAndPort, security: ClientSecurity, authority: String? = nil) throws -> Connection {
        .http2(try makeClient(to: address, security: security, authority: authority))
    }
}

extension CallOptions {
    /// Calls between services: fail at once when the peer is down instead of waiting for it, and give up
    /// after 10 s.
    public static var internalCall: CallOptions {
        var options = CallOptions.defaults
        options.waitForReady = false
        options.timeout = .seconds(10)
        return options
    }
}

/// Runs a client's connections inside a `ServiceGroup` and closes them on graceful shutdown.
public struct ClientRunner: Service {
    private let client: Connection

    /// Runs `client`.
    public init(_ client: Connection) {
        self.client = client
    }

    /// Runs an HTTP/2 `client`.
    public init(_ client: GRPCClient<HTTP2ClientTransport.Posix>) {
        self.client = .http2(client)
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await client.runConnections()
        } onGracefulShutdown: {
            client.beginGracefulShutdown()
        }
    }
}
