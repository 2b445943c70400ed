public import AtriumAPI
import AtriumCore
import Foundation
import GRPCCore
import NIOCore
import NIOHTTP1
import SwiftProtobuf

/// How an image's bytes travel when an ``ImageUploader`` registers it.
public enum UploadTransport: Sendable, Hashable {
    /// The byte path when this client knows the gateway's host, the server offers it and its data plane can be
    /// reached; else `grpc`.
    case automatic
    /// `Registry.Register`: the bytes inside gRPC messages, through the gateway (one protocol end to end; paced at
    /// the contract's byte rate).
    case grpc
    /// `Registry.AuthorizeUpload` through the gateway, then one HTTPS POST per image to the data plane.
    case bytes
}

extension AtriumClient {
    /// Runs `body` with an uploader that registers images one after another over `transport`: on the byte path,
    /// over one keep-alive HTTPS connection to the data plane, with capabilities asked for a few at a time. Use
    /// one uploader per concurrent task (`atrium images register --jobs N` runs N).
    ///
    /// ```swift
    /// try await atrium.withUploader { uploader in
    ///     for file in files { _ = try await uploader.registerImage(file: file) }
    /// }
    /// ```
    public func withUploader<Result: Sendable>(
        via transport: UploadTransport = .automatic,
        _ body: (inout ImageUploader) async throws -> Result
    ) async throws -> Result {
        func overGRPC() async throws -> Result {
            var uploader = ImageUploader(client: self, plane: nil)
            return try await body(&uploader)
        }
        guard transport != .grpc else { return try await overGRPC() }
        guard let access = dataPlane else {
            if transport == .bytes {
                throw RPCError(code: .failedPrecondition, message: "the byte path needs TLS to the gateway by a known host (a CA)")
            }
            return try await overGRPC()
        }
        let first: Atrium_V1_AuthorizeUploadResponse
        do {
            first = try await authorizeUploads(ImageUploader.window)
        } catch let error as RPCError where transport == .automatic && [.failedPrecondition, .unimplemented].contains(error.code) {
            return try await overGRPC()
        }
        let (host, port) = try dataPlaneEndpoint(baseURL: first.baseURL, port: first.port, defaultHost: access.host)
        do {
            return try await DataPlaneConnection.with(host: host, port: port, caPath: access.caPath) { connection in
                var uploader = ImageUploader(client: self, plane: .init(connection: connection, capabilities: first.capabilities))
                return try await body(&uploader)
            }
        } catch let unreachable as DataPlaneConnection.Unreachable {
            // Raised only while connecting, before `body` ran.
            guard transport == .automatic else { throw unreachable.error }
            return try await overGRPC()
        }
    }

    func authorizeUploads(_ count: Int) async throws -> Atrium_V1_AuthorizeUploadResponse {
        try await registry.authorizeUpload(request: ClientRequest(message: .with { $0.count = UInt32(count) }, metadata: metadata))
    }
}

/// Registers images one at a time for ``AtriumClient/withUploader(via:_:)``: over the data plane when the
/// uploader has one, else with `Registry.Register`.
public struct ImageUploader {
    struct Plane {
        var connection: DataPlaneConnection
        var capabilities: [Atrium_V1_UploadCapability]
    }

    /// Capabilities asked for at once: used within their lifetime (5 s by default) by a client uploading a few
    /// images a second or more; an expired one is replaced.
    static let window = 8
    /// Bytes read from a file and sent at once.
    static let chunkSize = 1 << 20

    private let client: AtriumClient
    private var plane: Plane?

    init(client: AtriumClient, plane: Plane?) {
        self.client = client
        self.plane = plane
    }

    /// Whether images travel over the data plane (else inside gRPC messages). It turns false for the rest of the
    /// session when the plane closes the connection (after refusing a large upload, or at its shutdown).
    public var usesBytePath: Bool { plane != nil }

    /// Registers a DICOM Part 10 file; returns once the registry has durably stored it.
    public mutating func registerImage(file path: String, comment: String = "") async throws -> Atrium_V1_RegisterResponse {
        try await register(header: .with { $0.format = .dicomPart10; $0.comment = comment }, file: path)
    }

    /// Registers a file under an explicit header (supersede, conditions, raw pixels, ...), as
    /// ``AtriumClient/register(header:file:)`` does; the size is filled in.
    public mutating func register(header: Atrium_V1_RegisterHeader, file path: String) async throws -> Atrium_V1_RegisterResponse {
        guard plane != nil else { return try await client.register(header: header, file: path) }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var header = header
        header.sizeBytes = try handle.seekToEnd()
        var renewed = false
        while plane != nil {
            try handle.seek(toOffset: 0)
            do {
                return try await post(header: header) { try handle.read(upToCount: Self.chunkSize) }
            } catch is CapabilityRefusal where !renewed {
                // Expired on the way, or spent: once more with a fresh capability.
                renewed = true
            } catch let refusal as CapabilityRefusal {
                throw refusal.error
            } catch is ConnectionLost {
                // Not answered: over gRPC instead (registering the same bytes again is idempotent).
                break
            }
        }
        return try await client.register(header: header, file: path)
    }

    /// The data plane connection failed before the upload was answered; the session goes on over gRPC.
    private struct ConnectionLost: Error {}

    /// A capability the plane refused (expired or spent), worth one more try with a fresh one.
    private struct CapabilityRefusal: Error {
        var error: RPCError
    }

    private mutating func post(header: Atrium_V1_RegisterHeader, chunks: () throws -> Data?) async throws -> Atrium_V1_RegisterResponse {
        let capability = try await nextCapability()
        let encoded = TokenSealer.base64URL(try header.serializedBytes() as [UInt8])
        var answer = ByteBuffer()
        do {
            try await plane!.connection.post(
                capability.path,
                headers: [("Content-Type", "application/dicom"), ("X-Atrium-Register-Header", encoded)],
                contentLength: header.sizeBytes,
                chunks: chunks
            )
            try await plane!.connection.receive(from: 0) { part in
                var part = part
                answer.writeBuffer(&part)
            }
        } catch let refusal as DataPlaneConnection.Refusal {
            if refusal.closes { plane = nil }
            let error = Self.error(refusal)
            if error.reason == "expired" || error.reason == "spent" { throw CapabilityRefusal(error: error.error) }
            throw error.error
        } catch {
            // The request may be cut off mid-body, so the connection cannot carry another: the rest of the session
            // registers over gRPC. A connection that failed is retried there at once; any other error is the caller's.
            plane = nil
            if let error = error as? RPCError, error.code == .unavailable { throw ConnectionLost() }
            throw error
        }
        do {
            var options = JSONDecodingOptions()
            options.ignoreUnknownFields = true
            return try Atrium_V1_RegisterResponse(jsonString: String(buffer: answer), options: options)
        } catch {
            throw RPCError(code: .internalError, message: "the data plane's answer is not a RegisterResponse: \(error)")
        }
    }

    /// A capability valid for a while yet, asking for a new window when none is.
    private mutating func nextCapability() async throws -> Atrium_V1_UploadCapability {
        let soon = Date().addingTimeInterval(0.5)
        plane!.capabilities.removeAll { $0.expires.date < soon }
        if plane!.capabilities.isEmpty {
            plane!.capabilities = try await client.authorizeUploads(Self.window).capabilities
        }
        return plane!.capabilities.removeFirst()
    }

    /// The gRPC error a refusal's JSON names (`{"code": 8, "status": …, "message": …, "reason": …}`).
    static func error(_ refusal: DataPlaneConnection.Refusal) -> (error: RPCError, reason: String?) {
        let object = (try? JSONSerialization.jsonObject(with: Data(refusal.message.utf8))) as? [String: Any]
        let message = object?["message"] as? String ?? "the data plane answered \(refusal.status.code) \(refusal.message)"
        let code = (object?["code"] as? Int).flatMap(Status.Code.init(rawValue:)).flatMap(RPCError.Code.init) ?? .unavailable
        return (RPCError(code: code, message: message), object?["reason"] as? String)
    }
}
