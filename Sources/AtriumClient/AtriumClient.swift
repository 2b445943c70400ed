import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
import Crypto
public import Foundation
public import GRPCCore
public import GRPCNIOTransportHTTP2
import AtriumTransport

/// How to reach an Atrium network: the gateway's address, the CA that signed its certificate, and the
/// subscriber's credential: an API key, or the client certificate `enroll` stored.
///
/// The CLI fills it from `--gateway`, `--ca`, `--api-key` or `--identity`, or `ATRIUM_GATEWAY`, `ATRIUM_CA`,
/// `ATRIUM_API_KEY` (secret) and `ATRIUM_IDENTITY`.
public struct AtriumClientConfiguration: Sendable {
    /// The gateway, e.g. `localhost:7443` (API keys) or `localhost:7444` (client certificates).
    public var gateway: HostAndPort
    /// PEM file of the CA that signed the gateway's certificate; `nil` for plaintext (tests only).
    public var caPath: String?
    /// The subscriber's API key, `atr_<prefix>_<secret>`; empty when a certificate is used or for enrolment.
    public var apiKey: String
    /// The enrolled client certificate and its key (PEM files), presented in the TLS handshake.
    public var clientCertificate: (certificatePath: String, keyPath: String)?
    /// Bytes per uploaded chunk, 64 KiB to 1 MiB.
    public var chunkSize: Int
    /// Ask for gzip message compression in both directions (off by default: image bytes barely gzip, and the
    /// lossless pixel encodings of `fetchImages` compress far better for less CPU).
    public var messageCompression = false

    /// A configuration with an API key.
    public init(gateway: HostAndPort, caPath: String?, apiKey: String, chunkSize: Int = 1 << 20) {
        self.gateway = gateway
        self.caPath = caPath
        self.apiKey = apiKey
        self.chunkSize = chunkSize
    }

    /// A configuration with an enrolled client certificate (see ``AtriumClient/enroll(gateway:caPath:token:into:)``).
    public init(gateway: HostAndPort, caPath: String, identity: EnrolledIdentity, chunkSize: Int = 1 << 20) {
        self.gateway = gateway
        self.caPath = caPath
        self.apiKey = ""
        self.clientCertificate = (identity.certificatePath, identity.keyPath)
        self.chunkSize = chunkSize
    }

    var security: ClientSecurity {
        guard let caPath else { return .plaintext }
        guard let certificate = clientCertificate else { return .tls(caPath: caPath) }
        return .mutualTLS(TLSFiles(caPath: caPath, certificatePath: certificate.certificatePath, keyPath: certificate.keyPath))
    }
}

/// The SDK that hospital systems link: register and fetch images through the gateway.
///
/// ```swift
/// try await AtriumClient.with(configuration) { atrium in
///     let receipt = try await atrium.registerImage(file: "/data/ct/slice-001.dcm")
///     try await atrium.fetchImage(id: receipt.imageID, to: "/tmp/slice-001.dcm")
/// }
/// ```
public struct AtriumClient: Sendable {
    private let grpc: GRPCClient<HTTP2ClientTransport.Posix>
    let chunkSize: Int
    /// The data plane's host and trust, when the client reached the gateway over TLS by a known host.
    let dataPlane: DataPlaneAccess?
    /// The credential header to send with every call made through the raw stubs (empty with a certificate),
    /// e.g. `try await atrium.account.getUsage(.init(), metadata: atrium.metadata)`.
    public let metadata: Metadata

    /// Runs `body` with a connected client and closes it afterwards.
    public static func with<Result: Sendable>(
        _ configuration: AtriumClientConfiguration,
        _ body: (AtriumClient) async throws -> Result
    ) async throws -> Result {
        try await ClientFactory.withClient(to: configuration.gateway, security: configuration.security, compression: configuration.messageCompression) { grpc in
            try await body(AtriumClient(grpc: grpc, configuration: configuration))
        }
    }

    private init(grpc: GRPCClient<HTTP2ClientTransport.Posix>, configuration: AtriumClientConfiguration) {
        self.grpc = grpc
        self.metadata = configuration.apiKey.isEmpty ? [:] : ["authorization": "Bearer \(configuration.apiKey)"]
        self.chunkSize = configuration.chunkSize
        self.dataPlane = configuration.caPath.map { DataPlaneAccess(host: configuration.gateway.host, caPath: $0) }
    }

    /// A client over a connection the caller runs, sending `metadata` with every call: for tools that talk to
    /// a backend directly (benchmarks measuring the gateway's cost) rather than through the gateway.
    public init(connection: GRPCClient<HTTP2ClientTransport.Posix>, metadata: Metadata, chunkSize: Int = 1 << 20) {
        self.grpc = connection
        self.metadata = metadata
        self.chunkSize = chunkSize
        self.dataPlane = nil
    }

    /// The raw `Registry` stub with this client's connection, for calls the SDK does not wrap yet.
    public var registry: Atrium_V1_Registry.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    /// The raw `Delivery` stub.
    public var delivery: Atrium_V1_Delivery.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    /// The raw `SecurityAdmin` stub (operators).
    public var admin: Atrium_V1_SecurityAdmin.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    /// The raw `Account` stub: who am I, usage, statements, quotes, notifications, accesses.
    public var account: Atrium_V1_Account.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    /// The raw `Processing` stub.
    public var processing: Atrium_V1_Processing.Client<HTTP2ClientTransport.Posix> { .init(wrapping: grpc) }
    /// The connection itself, for any other generated stub: `Atrium_V1_Backup.Client(wrapping: atrium.connection)`.
    public var connection: GRPCClient<HTTP2ClientTransport.Posix> { grpc }

    /// Registers a DICOM Part 10 file, streaming it in chunks; memory stays bounded whatever its size.
    /// Returns once the registry has durably stored it.
    public func registerImage(file path: String, comment: String = "") async throws -> Atrium_V1_RegisterResponse {
        try await register(header: .with { $0.format = .dicomPart10; $0.comment = comment }, file: path)
    }

    /// Registers bytes already in memory (small objects; use ``registerImage(file:comment:)`` for files).
    public func registerImage(bytes: Data, comment: String = "") async throws -> Atrium_V1_RegisterResponse {
        try await register(header: .with { $0.format = .dicomPart10; $0.comment = comment }, bytes: bytes)
    }

    /// Registers a file under an explicit header (supersede, conditions, raw pixels, ...); the size is filled
    /// in. The file streams in chunks; memory stays bounded whatever its size.
    public func register(header: Atrium_V1_RegisterHeader, file path: String) async throws -> Atrium_V1_RegisterResponse {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var header = header
        header.sizeBytes = try handle.seekToEnd()
        try handle.seek(toOffset: 0)
                let request = StreamingClientRequest<Atrium_V1_RegisterRequest>(metadata: metadata) { [header] writer in
            try await writer.write(.with { $0.header = header })
            var offset: UInt64 = 0
            while let data = try handle.read(upToCount: chunkSize), !data.isEmpty {
                try await writer.write(.with { $0.chunk = .with { $0.offset = offset; $0.data = data } })
                offset += UInt64(data.count)
            }
        }
        return try await registry.register(request: request)
    }

    /// Registers bytes in memory under an explicit header (for raw pixels: the pixels, row-major, little
    /// endian); the size is filled in.
    public func register(header: Atrium_V1_RegisterHeader, bytes: Data) async throws -> Atrium_V1_RegisterResponse {
                var header = header
        header.sizeBytes = UInt64(bytes.count)
        let request = StreamingClientRequest<Atrium_V1_RegisterRequest>(metadata: metadata) { [header] writer in
            try await writer.write(.with { $0.header = header })
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + chunkSize, bytes.count)
                try await writer.write(.with { $0.chunk = .with { $0.offset = UInt64(offset); $0.data = bytes[offset..<end] } })
                offset = end
            }
        }
        return try await registry.register(request: request)
    }

    /// Every image record visible to the caller that matches `filter`, following page tokens.
    public func images(matching filter: Atrium_V1_ImageFilter = .init(), pageSize: UInt32 = 1000) async throws -> [Atrium_V1_ImageRecord] {
        var all: [Atrium_V1_ImageRecord] = []
        var token = ""
        repeat {
            let page = try await registry.listImages(
                request: ClientRequest(message: .with { $0.filter = filter; $0.page = .with { $0.pageSize = pageSize; $0.pageToken = token } }, metadata: metadata)
            )
            all += page.images
            token = page.nextPageToken
        } while !token.isEmpty
        return all
    }

    /// One image record.
    public func image(id: String) async throws -> Atrium_V1_ImageRecord {
        try await registry.getImage(request: ClientRequest(message: .with { $0.imageID = id }, metadata: metadata))
    }
}
