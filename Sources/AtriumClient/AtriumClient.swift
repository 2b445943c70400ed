import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
import AtriumRuntime
import Crypto
public import Foundation
public import GRPCCore
public import GRPCNIOTransportHTTP2

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
    private let configuration: AtriumClientConfiguration

    /// Runs `body` with a connected client and closes it afterwards.
    public static func with<Result: Sendable>(
        _ configuration: AtriumClientConfiguration,
        _ body: (AtriumClient) async throws -> Result
    ) async throws -> Result {
        try await ClientFactory.withClient(to: configuration.gateway, security: configuration.security) { grpc in
            try await body(AtriumClient(grpc: grpc, configuration: configuration))
        }
    }

    private init(grpc: GRPCClient<HTTP2ClientTransport.Posix>, configuration: AtriumClientConfiguration) {
        self.grpc = grpc
        self.configuration = configuration
    }

    /// The credential header to send with every call made through the raw stubs (empty with a certificate),
    /// e.g. `try await atrium.account.getUsage(.init(), metadata: atrium.metadata)`.
    public var metadata: Metadata {
        configuration.apiKey.isEmpty ? [:] : ["authorization": "Bearer \(configuration.apiKey)"]
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
        let chunkSize = configuration.chunkSize
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
        let chunkSize = configuration.chunkSize
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

    /// Fetches an image, handing each piece of its bytes to `consume` in order, and checks the whole against
    /// the SHA-256 the server sends. Throws the refusal's status (e.g. NOT_FOUND) if the image is not delivered,
    /// and DATA_LOSS if the bytes do not match.
    @discardableResult
    public func fetchImage(id: String, consume: @escaping @Sendable (Data) throws -> Void) async throws -> Atrium_V1_Digest {
        let request = ClientRequest<Atrium_V1_FetchRequest>(message: .with { $0.imageIds = [id]; $0.encoding = .original }, metadata: metadata)
        return try await delivery.fetch(request: request) { response in
            var hasher = SHA256()
            var received: UInt64 = 0
            var digest: Atrium_V1_Digest?
            for try await message in response.messages {
                switch message.part {
                case .begin: break
                case .chunk(let chunk):
                    guard chunk.offset == received else { throw RPCError(code: .dataLoss, message: "chunk out of order") }
                    try consume(chunk.data)
                    hasher.update(data: chunk.data)
                    received += UInt64(chunk.data.count)
                case .end(let end):
                    guard Hex.encode(hasher.finalize()) == end.digest.sha256, received == end.digest.sizeBytes else {
                        throw RPCError(code: .dataLoss, message: "the fetched bytes of '\(id)' do not match the digest the server sent")
                    }
                    digest = end.digest
                case .refused(let refusal):
                    let code = Status.Code(rawValue: Int(refusal.code)).flatMap(RPCError.Code.init) ?? .unknown
                    throw RPCError(code: code, message: refusal.message)
                case nil: break
                }
            }
            guard let digest else { throw RPCError(code: .dataLoss, message: "the stream of '\(id)' ended early") }
            return digest
        }
    }

    /// Fetches an image into `path`: written to `<path>.part`, checked against the SHA-256 the server sends,
    /// fsynced, then renamed into place, so `path` only ever holds a complete, verified image.
    @discardableResult
    public func fetchImage(id: String, to path: String) async throws -> Atrium_V1_Digest {
        let partPath = path + ".part"
        _ = FileManager.default.createFile(atPath: partPath, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: partPath))
        var completed = false
        defer {
            try? handle.close()
            if !completed { try? FileManager.default.removeItem(atPath: partPath) }
        }
        let digest = try await fetchImage(id: id) { data in try handle.write(contentsOf: data) }
        try handle.synchronize()
        try handle.close()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partPath, toPath: path)
        completed = true
        return digest
    }
}
