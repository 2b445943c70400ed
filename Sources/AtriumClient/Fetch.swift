public import AtriumAPI
import AtriumCore
public import Crypto
import SwiftProtobuf
public import Foundation
public import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// How ``AtriumClient/fetchImages(_:options:destination:progress:)`` fetches.
public struct FetchOptions: Sendable {
    /// The wanted encoding (every one is lossless); the server may deliver another, saying why.
    public var encoding: Atrium_V1_Encoding
    /// The fetch's name, reused on every retry so usage counts each image once. `nil`: a new random one.
    public var fetchID: String?
    /// How many times in a row a call may fail without progress before the fetch gives up.
    public var maxAttempts: Int
    /// The pause before the first retry; it doubles, up to `maxBackoff`, with jitter.
    public var initialBackoff: Duration
    /// The longest pause between retries, however many times the backoff has doubled.
    public var maxBackoff: Duration
    /// For printers: the open print job whose capability allows the fetch.
    public var printJobID: String
    /// How the bytes travel: gRPC by default; the byte path (HTTPS from the data plane) on request.
    public var transport: FetchTransport

    /// Options with the defaults: the stored bytes (`.original`) over gRPC, a new fetch ID, 6 attempts,
    /// and a backoff from 200 ms up to 5 s.
    public init(
        encoding: Atrium_V1_Encoding = .original,
        fetchID: String? = nil,
        printJobID: String = "",
        transport: FetchTransport = .grpc,
        maxAttempts: Int = 6,
        initialBackoff: Duration = .milliseconds(200),
        maxBackoff: Duration = .seconds(5)
    ) {
        self.encoding = encoding
        self.fetchID = fetchID
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.printJobID = printJobID
        self.transport = transport
    }
}

/// Where one fetched image's bytes go. A destination may already hold the start of the object from an earlier,
/// interrupted run (`resumableBytes`): the fetch then asks only for the rest.
public protocol FetchDestination: AnyObject {
    /// Bytes already held from an earlier run, to resume after; 0 for none.
    var resumableBytes: UInt64 { get }
    /// Feeds the held bytes to `hasher` (so the whole object's hash can be checked at the end).
    func rehash(into hasher: inout SHA256) throws
    /// Drops every held byte (the object changed, or the held bytes were wrong).
    func reset() throws
    /// Adds the next bytes of the object, in order, after those already held.
    func append(_ data: Data) throws
    /// The object is complete and verified.
    func finish(_ image: FetchedImage) throws
    /// The fetch of this image failed part-way: release what is held (a file destination keeps its partial file
    /// for a later resume).
    func abandon()
    /// The image was refused: drop what is held, nothing will resume it.
    func discard()
}

/// A fetched, verified image.
public struct FetchedImage: Sendable {
    /// The ID of the image, as asked for.
    public var imageID: String
    /// The SHA-256 and size of the whole object, as the server sent them (the received bytes match).
    public var digest: Atrium_V1_Digest
    /// The transfer syntax UID of the delivered bytes.
    public var transferSyntaxUID: String
    /// The encoding delivered; it may differ from the one asked for (``encodingNote`` says why).
    public var encoding: Atrium_V1_Encoding
    /// Why the encoding differs from the one asked for; empty when it does not.
    public var encodingNote: String
    /// Bytes received in this run (less than the size when resumed).
    public var receivedBytes: UInt64
}

/// How one image of a fetch ended.
public enum FetchOutcome: Sendable {
    /// Delivered and verified against the server's digest.
    case fetched(FetchedImage)
    /// Not delivered: not found or not visible (the two are not distinguished), with the server's status.
    case refused(imageID: String, code: RPCError.Code, message: String)
}

/// Progress of a fetch, reported after each chunk.
public struct FetchProgress: Sendable {
    /// The image the latest chunk belongs to.
    public var imageID: String
    /// Bytes of that image held so far, counting any kept from an earlier run.
    public var receivedBytes: UInt64
    /// The size of that image's delivered object, in bytes.
    public var totalBytes: UInt64
    /// Images finished so far, fetched or refused.
    public var imagesDone: Int
    /// The number of distinct images the fetch asks for.
    public var imagesTotal: Int
}

extension AtriumClient {
    /// Fetches images in one stream, each into its own destination, verified against the SHA-256 the server
    /// sends. When the connection drops, it calls again for what is missing, with the offset each image reached,
    /// after an exponential backoff; every call carries the same fetch ID, so usage counts each image once.
    /// Returns one outcome per distinct ID, in order. Throws when the calls keep failing without progress, or
    /// on an error that retrying cannot fix (a refused credential, a bad request).
    public func fetchImages(
        _ ids: [String],
        options: FetchOptions = .init(),
        destination: (String) throws -> any FetchDestination,
        progress: @escaping (FetchProgress) -> Void = { _ in }
    ) async throws -> [FetchOutcome] {
        var order: [String] = []
        var seen = Set<String>()
        for id in ids where seen.insert(id).inserted { order.append(id) }
        let fetchID = options.fetchID ?? "f-\(UUID().uuidString.lowercased())"
        var states: [String: Receiving] = [:]
        for id in order {
            let target = try destination(id)
            let state = Receiving(target)
            if target.resumableBytes > 0 {
                try target.rehash(into: &state.hasher)
                state.received = target.resumableBytes
            }
            states[id] = state
        }
        defer { for state in states.values where !state.done { state.target.abandon() } }
        let session = FetchSession(states: states, total: order.count, progress: progress)
        var failures = 0
        var backoff = options.initialBackoff
        var useBytePath = options.transport != .grpc
        if options.transport == .bytes && dataPlane == nil {
            throw RPCError(code: .failedPrecondition, message: "the byte path needs a client that reached the gateway over TLS")
        }
        while session.outcomes.count < order.count {
            let pending = order.filter { session.outcomes[$0] == nil }
            let request = Atrium_V1_FetchRequest.with {
                $0.imageIds = pending
                $0.encoding = options.encoding
                $0.fetchID = fetchID
                $0.printJobID = options.printJobID
                for id in pending where states[id]!.received > 0 { $0.resumeOffsets[id] = states[id]!.received }
            }
            session.progressed = false
            do {
                if useBytePath, let dataPlane {
                    do {
                        try await fetchOverBytePath(request, session: session, access: dataPlane)
                    } catch let error as RPCError where options.transport == .automatic && (error.code == .unimplemented || error.code == .failedPrecondition) {
                        // The server has no byte path, or the contract paces bytes: gRPC it is, from now on.
                        useBytePath = false
                        continue
                    } catch let unreachable as DataPlaneConnection.Unreachable {
                        // Only the gateway's port is open to this client: gRPC, unless the byte path was asked for.
                        guard options.transport == .automatic else { throw unreachable.error }
                        useBytePath = false
                        continue
                    }
                } else {
                    try await delivery.fetch(request: ClientRequest(message: request, metadata: metadata)) { response in
                        for try await message in response.messages { try session.handle(message) }
                    }
                }
                if session.outcomes.count < order.count {
                    throw RPCError(code: .unavailable, message: "the fetch stream ended before every image was delivered")
                }
            } catch let error as RPCError where Self.isRetryable(error.code) {
                if session.progressed {
                    failures = 0
                    backoff = options.initialBackoff
                }
                failures += 1
                guard failures < options.maxAttempts else { throw error }
                if error.code == .dataLoss {
                    // The server found its copy damaged and dropped it; ask for the whole object again.
                    for id in pending { try states[id]?.restart() }
                }
                try await Task.sleep(for: backoff * Double.random(in: 0.5...1.0))
                backoff = min(backoff * 2, options.maxBackoff)
            }
        }
        let outcomes = session.outcomes
        return order.map { outcomes[$0]! }
    }

    /// Fetches images into `directory`, one `<image ID>.dcm` each: written to `<name>.part` (kept when the fetch
    /// fails, and resumed by the next call), checked against the SHA-256 the server sends, fsynced, then renamed
    /// into place, so a `.dcm` only ever holds a complete, verified image.
    public func fetchImages(
        _ ids: [String],
        into directory: String,
        options: FetchOptions = .init(),
        progress: @escaping (FetchProgress) -> Void = { _ in }
    ) async throws -> [FetchOutcome] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try await fetchImages(ids, options: options, destination: { id in
            guard !id.isEmpty, !id.contains("/"), id != ".", id != ".." else {
                throw RPCError(code: .invalidArgument, message: "'\(id)' cannot name a file")
            }
            return try FileDestination(path: "\(directory)/\(id).dcm")
        }, progress: progress)
    }

    /// Fetches one image, handing each piece of its bytes to `consume` in order, and checks the whole against
    /// the SHA-256 the server sends (resuming after a dropped connection). Throws the refusal's status (e.g.
    /// NOT_FOUND) if the image is not delivered, and DATA_LOSS if the bytes do not match.
    @discardableResult
    public func fetchImage(id: String, encoding: Atrium_V1_Encoding = .original, consume: @escaping (Data) throws -> Void) async throws -> Atrium_V1_Digest {
        let outcome = try await fetchImages([id], options: .init(encoding: encoding), destination: { _ in StreamDestination(consume) })
        return try outcome[0].image().digest
    }

    /// Fetches one image into `path` (see ``fetchImages(_:into:options:progress:)`` for the `.part` file).
    @discardableResult
    public func fetchImage(id: String, to path: String, encoding: Atrium_V1_Encoding = .original) async throws -> Atrium_V1_Digest {
        let outcome = try await fetchImages([id], options: .init(encoding: encoding), destination: { _ in try FileDestination(path: path) })
        return try outcome[0].image().digest
    }

    /// Images per `AuthorizeFetch` on the byte path: its capabilities are used within their lifetime.
    static let bytePathWindow = 50
    /// Requests sent ahead on the data plane connection (HTTP/1.1 pipelining), so that the server always has
    /// the next object to send while the client is still reading the last.
    static let bytePathDepth = 4

    /// One round of the byte path for `request`'s images: capabilities for a window at a time (the next window's
    /// asked for while the current one downloads), then each object's bytes from the data plane over one
    /// keep-alive connection with requests pipelined, fed to `session` as the gRPC stream's messages would be (so
    /// resume, hashing and destinations behave the same). An expired capability is renewed once; a failure is
    /// thrown as UNAVAILABLE (or DATA_LOSS) for the caller's retry loop.
    private func fetchOverBytePath(_ request: Atrium_V1_FetchRequest, session: FetchSession, access: DataPlaneAccess) async throws {
        let windows = stride(from: 0, to: request.imageIds.count, by: Self.bytePathWindow).map {
            Array(request.imageIds[$0..<min($0 + Self.bytePathWindow, request.imageIds.count)])
        }
        let delivery = self.delivery
        let metadata = self.metadata
        @Sendable func authorize(_ ids: [String]) async throws -> Atrium_V1_AuthorizeFetchResponse {
            var window = request
            window.imageIds = ids
            window.resumeOffsets = [:]
            return try await delivery.authorizeFetch(request: ClientRequest(message: window, metadata: metadata))
        }
        var grant = try await authorize(windows[0])
        let (host, port) = try grant.dataPlane(defaultHost: access.host)
        try await DataPlaneConnection.with(host: host, port: port, caPath: access.caPath) { connection in
            for index in windows.indices {
                let upcoming = index + 1 < windows.count ? Task { try await authorize(windows[index + 1]) } : nil
                defer { upcoming?.cancel() }
                for refusal in grant.refused { try session.handle(.with { $0.refused = refusal }) }
                try await download(grant.capabilities, session: session, connection: &connection, renew: authorize)
                if let upcoming { grant = try await upcoming.value }
            }
        }
    }

    /// The objects of `capabilities` over `connection`, each from the offset its destination holds, up to
    /// ``bytePathDepth`` requests ahead of the answers.
    private func download(
        _ capabilities: [Atrium_V1_FetchCapability],
        session: FetchSession,
        connection: inout DataPlaneConnection,
        renew: ([String]) async throws -> Atrium_V1_AuthorizeFetchResponse
    ) async throws {
        var queue = capabilities.filter { session.states[$0.object.imageID].map { !$0.done } ?? false }.map { (capability: $0, renewed: false) }
        var sent: [(capability: Atrium_V1_FetchCapability, renewed: Bool, offset: UInt64)] = []
        var next = 0
        while next < queue.count || !sent.isEmpty {
            while sent.count < Self.bytePathDepth, next < queue.count {
                let (capability, renewed) = queue[next]
                next += 1
                let offset = session.states[capability.object.imageID]!.received
                try await connection.send(capability.path, from: offset)
                sent.append((capability, renewed, offset))
            }
            let (capability, renewed, offset) = sent.removeFirst()
            let imageID = capability.object.imageID
            let state = session.states[imageID]!
            var begin = capability.object
            begin.startOffset = offset
            try session.handle(.with { $0.begin = begin })
            do {
                try await connection.receive(from: offset) { buffer in
                    try session.handle(.with { $0.chunk = .with { $0.imageID = imageID; $0.offset = state.received; $0.data = buffer.getData(at: buffer.readerIndex, length: buffer.readableBytes, byteTransferStrategy: .noCopy) ?? Data() } })
                }
                try session.handle(.with { $0.end = .with { $0.imageID = imageID; $0.digest = .with { $0.sha256 = begin.sha256; $0.sizeBytes = begin.sizeBytes } } })
            } catch let refusal as DataPlaneConnection.Refusal {
                switch refusal.status {
                case .forbidden where !renewed:
                    // Expired (or issued before the server restarted): a fresh capability for this image, queued last.
                    let fresh = try await renew([imageID])
                    for refusal in fresh.refused { try session.handle(.with { $0.refused = refusal }) }
                    if let capability = fresh.capabilities.first { queue.append((capability, true)) }
                case .rangeNotSatisfiable:
                    try state.restart()
                    throw RPCError(code: .dataLoss, message: "image '\(imageID)': the held part is longer than the object; fetching it again")
                case .internalServerError:
                    throw RPCError(code: .dataLoss, message: "image '\(imageID)': \(refusal.message)")
                default:
                    throw RPCError(code: .unavailable, message: "image '\(imageID)': the data plane answered \(refusal.status.code) \(refusal.message)")
                }
            }
        }
    }

    private static func isRetryable(_ code: RPCError.Code) -> Bool {
        code == .unavailable || code == .aborted || code == .dataLoss
    }
}

extension FetchOutcome {
    /// The fetched image, or the refusal as an error.
    public func image() throws -> FetchedImage {
        switch self {
        case .fetched(let image): return image
        case .refused(_, let code, let message): throw RPCError(code: code, message: message)
        }
    }
}

/// The receiving side of one ``AtriumClient/fetchImages(_:options:destination:progress:)``, across its calls.
///
/// `@unchecked Sendable`: the response handler that uses it runs inside the awaited call, so one task at a time
/// touches it, never two at once.
private final class FetchSession: @unchecked Sendable {
    let states: [String: Receiving]
    let total: Int
    let progress: (FetchProgress) -> Void
    var outcomes: [String: FetchOutcome] = [:]
    /// Whether the current call delivered anything (a retry after progress starts a fresh backoff).
    var progressed = false

    init(states: [String: Receiving], total: Int, progress: @escaping (FetchProgress) -> Void) {
        self.states = states
        self.total = total
        self.progress = progress
    }

    func handle(_ message: Atrium_V1_FetchResponse) throws {
        switch message.part {
        case .begin(let begin):
            try states[begin.imageID]?.begin(begin)
        case .chunk(let chunk):
            guard let state = states[chunk.imageID] else { return }
            try state.append(chunk)
            progressed = true
            progress(.init(imageID: chunk.imageID, receivedBytes: state.received, totalBytes: state.size, imagesDone: outcomes.count, imagesTotal: total))
        case .end(let end):
            guard let state = states[end.imageID] else { return }
            outcomes[end.imageID] = .fetched(try state.end(end))
            progressed = true
        case .refused(let refusal):
            guard let state = states[refusal.id] else { return }
            state.target.discard()
            state.done = true
            let code = Status.Code(rawValue: Int(refusal.code)).flatMap(RPCError.Code.init) ?? .unknown
            outcomes[refusal.id] = .refused(imageID: refusal.id, code: code, message: refusal.message)
        case nil:
            break
        }
    }
}

/// One image being received, across calls.
private final class Receiving {
    let target: any FetchDestination
    var hasher = SHA256()
    var received: UInt64 = 0
    var receivedThisRun: UInt64 = 0
    var size: UInt64 = 0
    /// The hash the server announced for the object, once known: a resumed call must deliver the same object.
    var expected: String?
    var transferSyntaxUID = ""
    var encoding: Atrium_V1_Encoding = .unspecified
    var note = ""
    var done = false

    init(_ target: any FetchDestination) { self.target = target }

    func begin(_ begin: Atrium_V1_FetchBegin) throws {
        if let expected, expected != begin.sha256 || begin.startOffset != received {
            throw RPCError(code: .dataLoss, message: "image '\(begin.imageID)' changed during the fetch (\(expected) then \(begin.sha256))")
        }
        if begin.startOffset == 0 && received > 0 {
            // The server starts over (it could not resume): so do we.
            try restart()
        }
        guard begin.startOffset == received else {
            throw RPCError(code: .internalError, message: "the server resumed image '\(begin.imageID)' at \(begin.startOffset), not \(received)")
        }
        expected = begin.sha256
        size = begin.sizeBytes
        transferSyntaxUID = begin.transferSyntaxUid
        encoding = begin.encoding
        note = begin.encodingNote
    }

    func append(_ chunk: Atrium_V1_FetchChunk) throws {
        guard chunk.offset == received else { throw RPCError(code: .dataLoss, message: "image '\(chunk.imageID)': chunk at \(chunk.offset), expected \(received)") }
        try target.append(chunk.data)
        hasher.update(data: chunk.data)
        received += UInt64(chunk.data.count)
        receivedThisRun += UInt64(chunk.data.count)
    }

    func end(_ end: Atrium_V1_FetchEnd) throws -> FetchedImage {
        guard Hex.encode(hasher.finalize()) == end.digest.sha256, received == end.digest.sizeBytes else {
            // Held bytes from an earlier run that were not this object's: start this image over.
            try restart()
            throw RPCError(code: .dataLoss, message: "the fetched bytes of '\(end.imageID)' do not match the digest the server sent")
        }
        let image = FetchedImage(
            imageID: end.imageID, digest: end.digest, transferSyntaxUID: transferSyntaxUID, encoding: encoding, encodingNote: note,
            receivedBytes: receivedThisRun
        )
        try target.finish(image)
        done = true
        return image
    }

    func restart() throws {
        try target.reset()
        hasher = SHA256()
        received = 0
        expected = nil
    }
}

/// A destination that hands the bytes to a closure and cannot resume across runs.
final class StreamDestination: FetchDestination {
    private let consume: (Data) throws -> Void
    init(_ consume: @escaping (Data) throws -> Void) { self.consume = consume }
    var resumableBytes: UInt64 { 0 }
    func rehash(into hasher: inout SHA256) {}
    func reset() throws {
        throw RPCError(code: .dataLoss, message: "bytes already handed on cannot be taken back; fetch the image again")
    }
    func append(_ data: Data) throws { try consume(data) }
    func finish(_ image: FetchedImage) {}
    func abandon() {}
    func discard() {}
}

/// A destination in memory, for objects small enough to hold (a film sheet's images).
public final class MemoryDestination: FetchDestination {
    /// The bytes received so far; the whole verified object once ``finished``.
    public private(set) var data = Data()
    /// Whether the object is complete and verified (``finish(_:)`` was called).
    public private(set) var finished = false

    /// An empty destination.
    public init() {}
    /// Always 0: memory holds nothing across runs.
    public var resumableBytes: UInt64 { 0 }
    /// Does nothing: there are never held bytes to hash.
    public func rehash(into hasher: inout SHA256) {}
    /// Drops the bytes received so far.
    public func reset() { data.removeAll() }
    /// Appends the bytes to ``data``.
    public func append(_ data: Data) { self.data.append(data) }
    /// Marks the object finished; ``data`` then holds it whole.
    public func finish(_ image: FetchedImage) { finished = true }
    /// Does nothing: the bytes received so far stay in ``data``.
    public func abandon() {}
    /// Drops the bytes received so far.
    public func discard() { data.removeAll() }
}

/// A destination file, written through `<path>.part`.
public final class FileDestination: FetchDestination {
    private let path: String
    private let partPath: String
    private let handle: FileHandle
    /// The size of `<path>.part` when it was opened: the bytes kept from an earlier run.
    public let resumableBytes: UInt64

    /// Opens `<path>.part`, keeping what it holds from an earlier run.
    public init(path: String) throws {
        self.path = path
        self.partPath = path + ".part"
        if !FileManager.default.fileExists(atPath: partPath) {
            _ = FileManager.default.createFile(atPath: partPath, contents: nil)
        }
        handle = try FileHandle(forUpdating: URL(fileURLWithPath: partPath))
        resumableBytes = try handle.seekToEnd()
    }

    deinit { try? handle.close() }

    /// Reads `<path>.part` from its start into `hasher`.
    public func rehash(into hasher: inout SHA256) throws {
        try handle.seek(toOffset: 0)
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { hasher.update(data: data) }
        _ = try handle.seekToEnd()
    }

    /// Empties `<path>.part`.
    public func reset() throws {
        try handle.truncate(atOffset: 0)
    }

    /// Appends the bytes to `<path>.part`.
    public func append(_ data: Data) throws { try handle.write(contentsOf: data) }

    /// Fsyncs `<path>.part`, then renames it to `path`, replacing any file already there.
    public func finish(_ image: FetchedImage) throws {
        try handle.synchronize()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partPath, toPath: path)
    }

    /// Fsyncs `<path>.part` and keeps it for a later resume; an empty one is removed.
    public func abandon() {
        try? handle.synchronize()
        // An empty partial file holds nothing to resume.
        if handle.offsetInFile == 0 { discard() }
    }

    /// Closes and removes `<path>.part`.
    public func discard() {
        try? handle.close()
        try? FileManager.default.removeItem(atPath: partPath)
    }
}
