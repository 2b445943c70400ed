import AtriumAPI
public import AtriumCore
import Foundation
import GRPCCore
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// How an image's bytes travel in ``AtriumClient/fetchImages(_:options:destination:progress:)``.
public enum FetchTransport: Sendable, Hashable {
    /// The byte path when this client knows the gateway's host, the server offers it and its data plane can be
    /// reached; else `grpc`.
    case automatic
    /// `Delivery.Fetch`: the bytes inside gRPC messages, through the gateway (one protocol end to end; paced
    /// at the contract's byte rate).
    case grpc
    /// `Delivery.AuthorizeFetch` through the gateway, then HTTPS GET (with Range to resume) from the data plane.
    case bytes
}

/// Where the data plane is and how to trust it: the host the client reached the gateway at, and the CA.
struct DataPlaneAccess: Sendable {
    var host: String
    var caPath: String
}

/// One keep-alive HTTPS connection to delivery's data plane (HTTP/1.1).
struct DataPlaneConnection {
    typealias Channel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    /// The data plane could not be connected to (a firewall that opens only the gateway's port, a wrong base URL).
    struct Unreachable: Error {
        var error: RPCError
    }

    /// A response that is not the object: the status and the plane's message.
    struct Refusal: Error {
        var status: HTTPResponseStatus
        var message: String
        /// The plane closes the connection after this answer (`Connection: close`).
        var closes = false
    }

    private var responses: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator
    private let requests: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>
    private let host: String

    /// Connects to `host:port`, trusting `caPath`, and runs `body` with the connection; closes it afterwards.
    static func with<Result: Sendable>(
        host: String,
        port: Int,
        caPath: String,
        _ body: (inout DataPlaneConnection) async throws -> Result
    ) async throws -> Result {
        let channel: Channel
        do {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(caPath)
            configuration.minimumTLSVersion = .tlsv12
            let context = try NIOSSLContext(configuration: configuration)
            // An IP literal is checked against the certificate's IP addresses; a name is sent for SNI and checked.
            let hostname = Self.isIPLiteral(host) ? nil : host
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: hostname))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        // Up to about 2 MiB of decrypted body parts wait for the consumer before the socket stops being read.
                        return try Channel(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 32, highWatermark: 128))
                        )
                    }
                }
        } catch {
            throw Unreachable(error: RPCError(code: .unavailable, message: "cannot reach the data plane at \(host):\(port): \(error)"))
        }
        return try await channel.executeThenClose { inbound, outbound in
            var connection = DataPlaneConnection(responses: inbound.makeAsyncIterator(), requests: outbound, host: host)
            return try await body(&connection)
        }
    }

    private init(responses: NIOAsyncChannelInboundStream<HTTPClientResponsePart>.AsyncIterator, requests: NIOAsyncChannelOutboundWriter<HTTPClientRequestPart>, host: String) {
        self.responses = responses
        self.requests = requests
        self.host = host
    }

    /// Sends `GET path` from byte `offset` on, without waiting for the answer: requests may be pipelined, and
    /// their answers come back in order through ``receive(from:body:)``.
    mutating func send(_ path: String, from offset: UInt64) async throws {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: host)
        if offset > 0 { headers.add(name: "Range", value: "bytes=\(offset)-") }
        do {
            try await requests.write(.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)))
            try await requests.write(.end(nil))
        } catch {
            throw RPCError(code: .unavailable, message: "data plane: \(error)")
        }
    }

    /// Sends `POST path` with `headers` and the body `chunks` gives until it returns `nil` (its length is in
    /// `Content-Length`), without waiting for the answer.
    mutating func post(_ path: String, headers extra: [(String, String)], contentLength: UInt64, chunks: () throws -> Data?) async throws {
        var headers = HTTPHeaders(extra)
        headers.add(name: "Host", value: host)
        headers.add(name: "Content-Length", value: "\(contentLength)")
        /// Writes one part; a failure is the connection's (UNAVAILABLE), while the body's own errors pass as they are.
        func write(_ part: HTTPClientRequestPart) async throws {
            do {
                try await requests.write(part)
            } catch {
                throw RPCError(code: .unavailable, message: "data plane: \(error)")
            }
        }
        try await write(.head(HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)))
        while let data = try chunks(), !data.isEmpty {
            try await write(.body(.byteBuffer(ByteBuffer(data: data))))
        }
        try await write(.end(nil))
    }

    /// Receives the answer to the oldest request sent, asked from `offset`, handing each piece of the body to
    /// `body` in order. Throws ``Refusal`` for any status but 200 (206 when resuming), and UNAVAILABLE when the
    /// connection fails.
    mutating func receive(from offset: UInt64, body: (ByteBuffer) throws -> Void) async throws {
        let status: HTTPResponseStatus
        let closes: Bool
        do {
            guard case .head(let head)? = try await responses.next() else {
                throw RPCError(code: .unavailable, message: "the data plane closed the connection")
            }
            status = head.status
            closes = !head.isKeepAlive
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(code: .unavailable, message: "data plane: \(error)")
        }
        let expected: HTTPResponseStatus = offset > 0 ? .partialContent : .ok
        var message = ByteBuffer()
        while true {
            let part: HTTPClientResponsePart?
            do {
                part = try await responses.next()
            } catch {
                throw RPCError(code: .unavailable, message: "data plane: \(error)")
            }
            switch part {
            case .body(var buffer):
                if status == expected {
                    try body(buffer)
                } else if message.readableBytes < 4096 {
                    message.writeBuffer(&buffer)
                }
            case .end:
                guard status == expected else {
                    throw Refusal(status: status, message: String(buffer: message).trimmingCharacters(in: .whitespacesAndNewlines), closes: closes)
                }
                return
            case .head:
                throw RPCError(code: .unavailable, message: "the data plane sent a second response head")
            case nil:
                throw RPCError(code: .unavailable, message: "the data plane closed the connection mid-response")
            }
        }
    }

    private static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

/// The data plane's host and port: `baseURL`'s when the server names one, else `host` with `port`.
func dataPlaneEndpoint(baseURL: String, port: UInt32, defaultHost host: String) throws -> (host: String, port: Int) {
    guard !baseURL.isEmpty else { return (host, Int(port)) }
    guard let url = URL(string: baseURL), url.scheme == "https", let named = url.host else {
        throw RPCError(code: .internalError, message: "the server's data plane URL '\(baseURL)' is not an https URL")
    }
    return (named, url.port ?? 443)
}

extension Atrium_V1_AuthorizeFetchResponse {
    func dataPlane(defaultHost host: String) throws -> (host: String, port: Int) {
        try dataPlaneEndpoint(baseURL: baseURL, port: port, defaultHost: host)
    }
}

/// `atrium up`'s health check of delivery's data plane: `GET /healthz` over HTTPS.
public enum DataPlaneProbe {
    /// "SERVING" when the data plane at `address` answers 200, else what went wrong.
    public static func check(_ address: HostAndPort, caPath: String) async -> String {
        do {
            return try await DataPlaneConnection.with(host: address.host, port: address.port, caPath: caPath) { connection in
                try await connection.send("/healthz", from: 0)
                var body = ByteBuffer()
                try await connection.receive(from: 0) { part in
                    var part = part
                    body.writeBuffer(&part)
                }
                return String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        } catch let refusal as DataPlaneConnection.Refusal {
            return "HTTP \(refusal.status.code)"
        } catch {
            return "NO ANSWER"
        }
    }
}
