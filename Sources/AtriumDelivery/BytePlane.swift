public import AtriumCore
import AtriumRuntime
import AtriumStorage
import Foundation
public import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
public import ServiceLifecycle
import Synchronization
public import AtriumTransport

/// Delivery's data plane: image bytes over HTTPS (HTTP/1.1, keep-alive, `Range`), the way cloud image stores
/// serve bulk data past an authorising API (S3 presigned URLs, DICOMweb bulk-data URIs).
///
/// A client first calls `Delivery.AuthorizeFetch` through the gateway, which authorises, meters and audits the
/// fetch like `Fetch`, and gets one capability per image; then it reads `GET /v1/objects/<token>` here. The
/// plane checks only the capability (its HMAC and expiry, see ``CapabilitySealer``): it never asks another
/// service, so a revoked share or suspended subscriber stops new capabilities at once (delivery asks the registry
/// when issuing them) and outstanding ones when they expire (`ATRIUM_DELIVERY_CAPABILITY_TTL_MS`, 5 s by default).
///
/// `GET /healthz` answers 200 `SERVING` to anyone. Answers for objects: 200 (whole object) or 206 (one `Range`), 416 for a range past the end, 403 for a capability that is
/// forged, from before a restart or expired (ask again), 404 for any other path, 405 for methods other than GET
/// and HEAD, 500 when the stored object is missing or shorter than recorded. Bytes are read with `pread` on NIO's
/// blocking-I/O thread pool, never on Swift's cooperative pool, and are not hashed here: the client checks the
/// SHA-256 that `AuthorizeFetch` gave it.
public final class BytePlane: Service, Sendable {
    /// What the plane serves `GET /v1/objects/…` from: delivery's capabilities over the two blob stores.
    struct Objects: Sendable {
        var sealer: CapabilitySealer
        var blobs: BlobStore
        var variants: BlobStore
    }

    private let listen: HostAndPort
    private let portFile: String?
    private let tls: TLSFiles
    private let baseURL: String
    private let objects: Objects?
    private let uploads = Mutex<(any UploadIntake)?>(nil)
    private let logger: Logger
    private let port = Mutex<Int?>(nil)

    init(listen: HostAndPort, portFile: String?, tls: TLSFiles, baseURL: String, objects: Objects?, logger: Logger) {
        self.listen = listen
        self.portFile = portFile
        self.tls = tls
        self.baseURL = baseURL
        self.objects = objects
        self.logger = logger
    }

    /// A plane that only takes uploads, for `intake` (the registry in its own process).
    public static func uploads(
        listen: HostAndPort,
        portFile: String?,
        tls: TLSFiles,
        baseURL: String,
        intake: any UploadIntake,
        logger: Logger
    ) -> BytePlane {
        let plane = BytePlane(listen: listen, portFile: portFile, tls: tls, baseURL: baseURL, objects: nil, logger: logger)
        plane.accept(uploads: intake)
        return plane
    }

    /// Takes `POST /v1/uploads/<token>` for `intake` too (in the one process: the registry's uploads). Call it
    /// before the plane runs, or it tells the intake its port at once.
    public func accept(uploads intake: any UploadIntake) {
        uploads.withLock { $0 = intake }
        if let bound = boundPort { intake.planeListening(port: bound, baseURL: baseURL) }
    }

    /// The bound port, once listening.
    var boundPort: Int? { port.withLock { $0 } }

    /// The largest read handed to the socket at once.
    static let readSize = 1 << 20
    /// Upload bytes handed to the intake at once, at most (the body arrives in TLS records of 16 KiB).
    static let uploadChunk = 1 << 20
    /// A refused upload's body, up to this size, is read and dropped so that the connection stays usable; a
    /// larger one closes the connection.
    static let drainLimit: UInt64 = 8 << 20

    public func run() async throws {
        let certificates = try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: tls.keyPath, format: .pem)
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: certificates, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        let context = try NIOSSLContext(configuration: configuration)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: listen.host, port: listen.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        let bound = server.channel.localAddress?.port ?? listen.port
        port.withLock { $0 = bound }
        uploads.withLock { $0 }?.planeListening(port: bound, baseURL: baseURL)
        if let portFile { try PortFile.write(port: bound, to: portFile) }
        logger.info(
            "data plane listening",
            metadata: ["address": "\(listen.host):\(bound)", "serves": "\([objects == nil ? nil : "objects", uploads.withLock { $0 } == nil ? nil : "uploads"].compactMap { $0 })"]
        )
        // Shutdown cancels the connections too: a read cut off is resumed by the client with a Range request.
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await self.serve(connection) }
                    }
                }
            }
        }
    }

    private typealias Inbound = NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    private typealias Outbound = NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                while let part = try await parts.next() {
                    // Between requests only heads come (the body of a refused upload was drained, or the connection closed).
                    guard case .head(let request) = part else { continue }
                    let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                    let uploadPrefix = "/v1/uploads/"
                    if request.method == .POST, path.hasPrefix(uploadPrefix), let intake = uploads.withLock({ $0 }) {
                        let reusable = try await upload(request, token: path.dropFirst(uploadPrefix.count), to: intake, &parts, outbound)
                        if !reusable || !request.isKeepAlive { return }
                        continue
                    }
                    // Anything else carries no body worth reading: read it to its end, then answer.
                    while let rest = try await parts.next() {
                        if case .end = rest { break }
                    }
                    try await respond(to: request, outbound)
                    if !request.isKeepAlive { return }
                }
            }
        } catch {
            logger.debug("data plane connection ended", metadata: [LogKey.error: "\(error)"])
        }
    }

    /// The body of an upload ended before its end (the client went away, or sent a new request head).
    struct TruncatedBody: Error {}

    /// Hands one upload to `intake` and answers it. Returns whether the connection can carry another request.
    private func upload(_ request: HTTPRequestHead, token: Substring, to intake: any UploadIntake, _ parts: inout Inbound, _ outbound: Outbound) async throws -> Bool {
        var headers: [String: String] = [:]
        for (name, value) in request.headers where headers[name.lowercased()] == nil { headers[name.lowercased()] = value }
        let expectsContinue = headers["expect"]?.lowercased() == "100-continue"
        var proceeded = false
        var ended = false
        var pending = Data()
        let expected = headers["content-length"].flatMap(UInt64.init)
        let answer = await intake.upload(token: token, headers: headers) {
            proceeded = true
            if expectsContinue { try await outbound.write(.head(HTTPResponseHead(version: request.version, status: .continue))) }
        } next: {
            // Whole TLS records are gathered into chunks of up to 1 MiB (one copy): one write each on the registry's side.
            while !ended && pending.count < Self.uploadChunk {
                switch try await parts.next() {
                case .body(let buffer):
                    if pending.isEmpty { pending.reserveCapacity(min(Self.uploadChunk + 16 << 10, expected.map { Int(clamping: $0) } ?? Self.uploadChunk)) }
                    pending.append(contentsOf: buffer.readableBytesView)
                case .end: ended = true
                case .head, nil: throw TruncatedBody()
                }
            }
            guard !pending.isEmpty else { return nil }
            defer { pending = Data() }
            return pending
        }
        // A refused upload's body: read and dropped when small (the connection stays usable), else the connection
        // closes (and a client that asked `Expect: 100-continue` never sends it).
        var reusable = true
        if !ended {
            let length = headers["content-length"].flatMap(UInt64.init)
            if (expectsContinue && !proceeded) || length.map({ $0 > Self.drainLimit }) ?? true {
                reusable = false
            } else {
                drain: while true {
                    switch try await parts.next() {
                    case .body: continue
                    case .end: break drain
                    case .head, nil: reusable = false; break drain
                    }
                }
            }
        }
        let body = ByteBuffer(string: answer.json + "\n")
        var responseHeaders = HTTPHeaders()
        responseHeaders.add(name: "Content-Type", value: "application/json")
        responseHeaders.add(name: "Content-Length", value: "\(body.readableBytes)")
        responseHeaders.add(name: "Cache-Control", value: "no-store")
        if !reusable || !request.isKeepAlive { responseHeaders.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: answer.status)
        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: responseHeaders)))
        try await outbound.write(.body(.byteBuffer(body)))
        try await outbound.write(.end(nil))
        return reusable
    }

    private func respond(to request: HTTPRequestHead, _ outbound: Outbound) async throws {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        if request.method == .POST, path.hasPrefix("/v1/uploads/") {
            return try await answer(request, .notFound, "this data plane takes no uploads", outbound)
        }
        guard request.method == .GET || request.method == .HEAD else {
            let allow = uploads.withLock { $0 } == nil ? "GET, HEAD" : "GET, HEAD, POST"
            return try await answer(request, .methodNotAllowed, "only \(allow)", outbound, extra: [("Allow", allow)])
        }
        if path == "/healthz" {
            // For `atrium up`, load balancers and compose: no capability needed, nothing revealed.
            return try await answer(request, .ok, "SERVING", outbound)
        }
        let prefix = "/v1/objects/"
        guard path.hasPrefix(prefix), let objects else { return try await answer(request, .notFound, "no such path", outbound) }
        let capability: ObjectCapability
        do {
            capability = try objects.sealer.open(path.dropFirst(prefix.count))
        } catch .expired {
            return try await answer(request, .forbidden, "the capability has expired: call AuthorizeFetch again", outbound)
        } catch {
            return try await answer(request, .forbidden, "not a valid capability (forged, damaged, or issued before a restart)", outbound)
        }
        let store = capability.store == .original ? objects.blobs : objects.variants
        let reader: BlobReader
        do {
            reader = try store.openReader(capability.sha256)
        } catch {
            logger.error("data plane cannot open a stored object", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(capability.imageID)"])
            return try await answer(request, .internalServerError, "the stored object is unavailable", outbound)
        }
        guard reader.size == capability.size else {
            logger.error("a stored object's size does not match its record", metadata: [LogKey.imageID: "\(capability.imageID)"])
            return try await answer(request, .internalServerError, "the stored object is unavailable", outbound)
        }
        let size = capability.size
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/dicom")
        headers.add(name: "Accept-Ranges", value: "bytes")
        headers.add(name: "ETag", value: "\"\(capability.sha256)\"")
        headers.add(name: "Cache-Control", value: "private, no-store")
        headers.add(name: "X-Atrium-SHA256", value: capability.sha256)
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        var status = HTTPResponseStatus.ok
        var range: Range<UInt64> = 0..<size
        if let value = request.headers.first(name: "Range") {
            switch Self.byteRange(value, size: size) {
            case .whole: break
            case .part(let part):
                status = .partialContent
                range = part
                headers.add(name: "Content-Range", value: "bytes \(part.lowerBound)-\(part.upperBound - 1)/\(size)")
            case .unsatisfiable:
                return try await answer(request, .rangeNotSatisfiable, "range past the end", outbound, extra: [("Content-Range", "bytes */\(size)")])
            }
        }
        headers.add(name: "Content-Length", value: "\(range.count)")
        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
        if request.method == .GET {
            var offset = range.lowerBound
            while offset < range.upperBound {
                let length = Int(min(UInt64(Self.readSize), range.upperBound - offset))
                let at = offset
                let buffer = try await NIOThreadPool.singleton.runIfActive { try Self.read(reader, offset: at, length: length) }
                offset += UInt64(buffer.readableBytes)
                try await outbound.write(.body(.byteBuffer(buffer)))
            }
        }
        try await outbound.write(.end(nil))
    }

    /// Reads `length` bytes at `offset` straight into a buffer (no zero-fill, no copy through `Data`).
    private static func read(_ reader: BlobReader, offset: UInt64, length: Int) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { pointer in
            try reader.read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: pointer.prefix(length)))
        }
        return buffer
    }

    /// A short text answer (a refusal, or the health answer).
    private func answer(
        _ request: HTTPRequestHead,
        _ status: HTTPResponseStatus,
        _ message: String,
        _ outbound: Outbound,
        extra: [(String, String)] = []
    ) async throws {
        let body = ByteBuffer(string: message + "\n")
        var headers = HTTPHeaders(extra)
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
        if request.method != .HEAD { try await outbound.write(.body(.byteBuffer(body))) }
        try await outbound.write(.end(nil))
    }

    enum ByteRange: Equatable {
        case whole
        case part(Range<UInt64>)
        case unsatisfiable
    }

    /// One `bytes=` range of RFC 9110: `a-b`, `a-` or `-n`. Anything else (several ranges, other units, a
    /// malformed header) is ignored, and the whole object is sent, as the RFC allows.
    static func byteRange(_ value: String, size: UInt64) -> ByteRange {
        let text = value.trimmingCharacters(in: .whitespaces)
        guard text.lowercased().hasPrefix("bytes="), !text.contains(",") else { return .whole }
        let spec = text.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return .whole }
        if parts[0].isEmpty {
            guard let suffix = UInt64(parts[1]) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part((size - min(suffix, size))..<size)
        }
        guard let first = UInt64(parts[0]) else { return .whole }
        let last: UInt64
        if parts[1].isEmpty {
            last = size &- 1
        } else {
            guard let given = UInt64(parts[1]), given >= first else { return .whole }
            last = min(given, size &- 1)
        }
        guard first < size else { return .unsatisfiable }
        return .part(first..<(last + 1))
    }
}
