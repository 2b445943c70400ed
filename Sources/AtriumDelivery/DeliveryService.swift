import SwiftProtobuf
import AtriumAPI
import AtriumCore
public import AtriumRuntime
import AtriumStorage
import Crypto
public import Foundation
import Synchronization
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
import AtriumBackend

/// Delivery: streams images to receivers, hands film sheets to printers, and keeps each subscriber's inbox.
///
/// - **Fetch.** The registry resolves each image for the caller (visibility, record); the bytes are then read
///   straight from the registry's immutable blob store, read-only, so they never pass through the registry
///   process. Other encodings are transcoded once per (stored bytes, encoding) and kept in delivery's own blob
///   store of variants. Each delivered image is metered once per (subscriber, fetch ID, image, encoding).
/// - **Print jobs** (`DeliveryService+Print.swift`): a job is a capability that lets its printer fetch its
///   images, with the submitter's visibility, while it is open.
/// - **Inbox** (`DeliveryService+Inbox.swift`): durable entries other services address to a subscriber,
///   pushed to watchers, kept until acknowledged.
public struct DeliveryService: Sendable {
    let registry: any Atrium_V1_RegistryInternal.ClientProtocol
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    let blobs: BlobStore
    let variants: BlobStore
    let store: DeliveryStore
    let configuration: DeliveryConfiguration
    /// Usage events, written before each image's `end` and drained to security by `usagePump`.
    let usage: UsageOutbox
    let usagePump: OutboxPump
    let audit: AuditTrail
    /// Rung when a subscriber's inbox gets an entry (key: subscriber ID).
    let inboxBell = Doorbell()
    /// Rung when a printer gets a job (key: printer ID).
    let printerBell = Doorbell()
    let transcodes = SingleFlight<VariantKey, VariantRow>()
    let budget: BudgetGate
    /// Blobs whose bytes matched their hash lately.
    let verifiedBlobs = VerifiedBlobs()
    /// Seals the byte path's capabilities; its key lives only in this process.
    let sealer = CapabilitySealer()
    /// Image records the registry allowed callers to fetch, for a few seconds (``VisibilityCache``).
    let visibility: VisibilityCache
    /// The byte path's HTTPS listener, unless it is off. In the one process it takes the registry's uploads too
    /// (``BytePlane/accept(uploads:)``).
    public let bytePlane: BytePlane?
    let logger: Logger

    /// A delivery service that resolves images through `registry`, reads their bytes from the registry's
    /// blob store (read-only), keeps its own state in `configuration`'s database and variant store, and meters
    /// through `security` (clients presenting delivery's certificate).
    /// The clock for expiry, grants and timestamps; injected so that tests can move it.
    let now: @Sendable () -> Date

    public init(
        configuration: DeliveryConfiguration,
        registry: Connection,
        security: Connection,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.now = now
        self.configuration = configuration
        self.registry = registry.registryInternal
        self.security = security.securityInternal
        self.blobs = try BlobStore(root: configuration.blobDirectory, readOnly: true)
        self.variants = try BlobStore(root: configuration.variantDirectory)
        _ = try variants.removeStaleTemporaries()
        self.store = try DeliveryStore(path: configuration.databasePath)
        let usage = try UsageOutbox(path: configuration.usageOutboxPath)
        let sender = UsageSender(outbox: usage, security: self.security, logger: logger)
        self.usage = usage
        // Woken by each event, batched over a quarter second; the interval only retries what a failure left.
        self.usagePump = OutboxPump(interval: .seconds(5), batchDelay: .milliseconds(250)) { await sender.deliver() }
        self.audit = AuditTrail(security: self.security, logger: logger)
        self.visibility = VisibilityCache(lifetime: configuration.visibilityLifetime)
        self.budget = BudgetGate(security: self.security, logger: logger)
        self.bytePlane = configuration.bytesListen.map { [blobs, variants, sealer] listen in
            BytePlane(
                listen: listen, portFile: configuration.bytesPortFile, tls: configuration.bytesTLS, baseURL: configuration.bytesBaseURL,
                objects: .init(sealer: sealer, blobs: blobs, variants: variants), logger: logger
            )
        }
        self.logger = logger
    }

    /// What the process must run besides the server: the usage sender, the audit trail and the data plane.
    public var background: [any Service] { [usagePump, audit] + (bytePlane.map { [$0 as any Service] } ?? []) }

    /// Every RPC service the delivery process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [PublicDelivery(service: self), InternalDelivery(service: self)]
    }

    // MARK: - Fetch

    /// Validates a fetch request.
    func validate(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller) throws {
        guard !request.imageIds.isEmpty else { throw DeliveryError.invalidArgument("image_ids is empty") }
        guard request.imageIds.count <= 1000 else { throw DeliveryError.invalidArgument("at most 1000 image_ids per call") }
        guard request.chunkSize == 0 || (64 << 10)...(1 << 20) ~= Int(request.chunkSize) else {
            throw DeliveryError.invalidArgument("chunk_size must be 0 or 65536 to 1048576 bytes")
        }
        if case .UNRECOGNIZED(let value) = request.encoding {
            throw DeliveryError.invalidArgument("unknown encoding \(value)")
        }
        if !request.fetchID.isEmpty {
            guard request.fetchID.utf8.count <= 64, request.fetchID.utf8.allSatisfy(Self.isFetchIDByte) else {
                throw DeliveryError.invalidArgument("fetch_id must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
            }
        }
        if request.printJobID.isEmpty, !caller.roles.contains(.receive) {
            throw DeliveryError.permissionDenied("a printer fetches only the images of its open print jobs: set print_job_id")
        }
    }

    private static func isFetchIDByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default: false
        }
    }

    /// Refuses a fetch that would take the caller past its budget cap (RESOURCE_EXHAUSTED).
    func checkBudget(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller) async throws {
        try await budget.check(
            .with { $0.delivery = .with { $0.imageCount = UInt32(request.imageIds.count) } },
            for: caller.subscriberID,
            requestID: caller.requestID
        )
    }

    /// Streams each image of `request` to `writer`: begin, chunks, end; or one `refused` item.
    func fetch(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller, writer: RPCWriter<Atrium_V1_FetchResponse>) async throws {
        let chunkSize = request.chunkSize == 0 ? 1 << 20 : Int(request.chunkSize)
        let encoding: Atrium_V1_Encoding = request.encoding == .unspecified ? .original : request.encoding
        let fetchID = request.fetchID.isEmpty ? caller.requestID : request.fetchID
        // Records are resolved a window at a time, one registry call per 64 images, and the next window's call
        // runs while the current window streams.
        let windows = Self.windows(of: request.imageIds)
        let lookup = try await lookup(for: request, caller: caller)
        var current = try await lookup(windows[0])
        for (index, window) in windows.enumerated() {
            async let upcoming = index + 1 < windows.count ? lookup(windows[index + 1]) : Lookup()
            for imageID in window {
                guard let record = current.records[imageID] else {
                    account(imageID, record: nil, caller: caller, outcome: RPCError.Code.notFound.statusName)
                    try await writer.write(.with {
                        $0.refused = .with {
                            $0.id = imageID
                            $0.code = Int32(Status.Code.notFound.rawValue)
                            $0.message = current.refusals[imageID] ?? "image '\(imageID)' not found"
                        }
                    })
                    continue
                }
                let delivered = try await deliverable(record, encoding: encoding, requestID: caller.requestID)
                try await send(delivered, imageID: imageID, from: request.resumeOffsets[imageID] ?? 0, chunkSize: chunkSize, to: writer) {
                    // Counted before `end`: an image the receiver has is counted even if this process dies now.
                    try meter(imageID, delivered: delivered, caller: caller, fetchID: fetchID)
                }
                account(imageID, record: record, caller: caller, outcome: "ok")
            }
            current = try await upcoming
        }
    }

    /// Capabilities for the byte path: the same visibility, metering and audit as ``fetch(_:caller:writer:)``,
    /// one registry call per 64 images, then one sealed capability per delivered object instead of its bytes.
    func authorizeFetch(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller) async throws -> Atrium_V1_AuthorizeFetchResponse {
        guard let bytePlane, let port = bytePlane.boundPort else {
            throw DeliveryError.failedPrecondition("the byte path is off on this server (ATRIUM_DELIVERY_BYTES_PORT): use Fetch")
        }
        let encoding: Atrium_V1_Encoding = request.encoding == .unspecified ? .original : request.encoding
        let fetchID = request.fetchID.isEmpty ? caller.requestID : request.fetchID
        let lookup = try await lookup(for: request, caller: caller)
        let method = Atrium_V1_Delivery.Method.AuthorizeFetch.descriptor
        let expires = now().addingTimeInterval(Double(configuration.capabilityTTL.components.seconds) + Double(configuration.capabilityTTL.components.attoseconds) * 1e-18)
        var response = Atrium_V1_AuthorizeFetchResponse()
        response.baseURL = configuration.bytesBaseURL
        response.port = UInt32(port)
        for window in Self.windows(of: request.imageIds) {
            let found = try await lookup(window)
            let (records, refusals) = (found.records, found.refusals)
            // The window's usage is written in one transaction before any of its capabilities is handed out.
            var events: [Atrium_V1_UsageEvent] = []
            for imageID in window {
                guard let record = records[imageID] else {
                    account(imageID, record: nil, caller: caller, outcome: RPCError.Code.notFound.statusName, method: method)
                    response.refused.append(.with {
                        $0.id = imageID
                        $0.code = Int32(Status.Code.notFound.rawValue)
                        $0.message = refusals[imageID] ?? "image '\(imageID)' not found"
                    })
                    continue
                }
                let delivered = try await deliverable(record, encoding: encoding, requestID: caller.requestID)
                let capability = ObjectCapability(
                    expiresUnixMilliseconds: UInt64(expires.timeIntervalSince1970 * 1000),
                    store: delivered.variantKey == nil ? .original : .variant,
                    size: delivered.size,
                    sha256: delivered.sha256,
                    encoding: Int32(delivered.encoding.rawValue),
                    subscriberID: caller.subscriberID,
                    fetchID: fetchID,
                    imageID: imageID
                )
                // Counted when granted, once per (subscriber, fetch ID, image, encoding) however often it is read.
                events.append(usageEvent(imageID, delivered: delivered, caller: caller, fetchID: fetchID))
                account(imageID, record: record, caller: caller, outcome: "ok", method: method)
                response.capabilities.append(.with {
                    $0.object = .with {
                        $0.imageID = imageID
                        $0.transferSyntaxUid = delivered.transferSyntaxUID
                        $0.encoding = delivered.encoding
                        $0.sizeBytes = delivered.size
                        $0.sha256 = delivered.sha256
                        $0.encodingNote = delivered.note
                    }
                    $0.path = "/v1/objects/" + sealer.seal(capability)
                    $0.expires = .init(date: expires)
                })
            }
            try meter(events, requestID: caller.requestID)
        }
        return response
    }

    /// `ids` in windows of 64, one registry call each.
    static func windows(of ids: [String]) -> [[String]] {
        stride(from: 0, to: ids.count, by: 64).map { Array(ids[$0..<min($0 + 64, ids.count)]) }
    }

    /// How `request`'s images are looked up for `caller`, a window at a time. For a printer: the open job that
    /// allows the fetch, and whose submitter's visibility applies; images outside the job are refused.
    func lookup(for request: Atrium_V1_FetchRequest, caller: VerifiedCaller) async throws -> @Sendable ([String]) async throws -> Lookup {
        let visibility: VerifiedCaller
        let allowed: Set<String>?
        if request.printJobID.isEmpty {
            (visibility, allowed) = (caller, nil)
        } else {
            let job = try await openJob(request.printJobID, printer: caller)
            visibility = try VerifiedCaller(message: Atrium_V1_CallerIdentity(serializedBytes: job.submitter))
            allowed = Set(job.images)
        }
        return { window in
            var refusals: [String: String] = [:]
            for id in window where !(allowed?.contains(id) ?? true) {
                refusals[id] = "image '\(id)' is not part of print job '\(request.printJobID)'"
            }
            let records = try await resolve(window.filter { refusals[$0] == nil }, for: visibility, refusals: &refusals)
            return Lookup(records: records, refusals: refusals)
        }
    }

    /// One window's records, and why the others are refused.
    struct Lookup: Sendable {
        var records: [String: Atrium_V1_ImageRecord] = [:]
        var refusals: [String: String] = [:]
    }

    /// The records of `ids` that `caller` may see: those allowed in the last few seconds from ``visibility``, the
    /// rest from one registry call; the others get a refusal message.
    func resolve(_ ids: [String], for caller: VerifiedCaller, refusals: inout [String: String]) async throws -> [String: Atrium_V1_ImageRecord] {
        guard !ids.isEmpty else { return [:] }
        var records = visibility.records(ids, for: caller)
        let missing = ids.filter { records[$0] == nil }
        guard !missing.isEmpty else { return records }
        let response: Atrium_V1_ResolveImagesResponse
        do {
            response = try await registry.resolveImages(.with { $0.caller = caller.message; $0.imageIds = missing }, options: .internalCall)
        } catch let error as RPCError {
            // The registry's status passes on, without the registry's response headers.
            throw error.withoutTransportHeaders
        }
        visibility.keep(response.records, for: caller)
        for item in response.missing { refusals[item.id] = item.message }
        for record in response.records where records[record.imageID] == nil { records[record.imageID] = record }
        return records
    }

    /// Streams one image's delivered bytes from `offset`: begin, chunks, end. From offset 0 the bytes are
    /// hashed on the way and checked before `end` is sent.
    private func send(
        _ delivered: Deliverable,
        imageID: String,
        from offset: UInt64,
        chunkSize: Int,
        to writer: RPCWriter<Atrium_V1_FetchResponse>,
        beforeEnd: () async throws -> Void
    ) async throws {
        guard offset <= delivered.size else {
            throw DeliveryError.invalidArgument("resume offset \(offset) is past the end of image '\(imageID)' (\(delivered.size) bytes in this encoding)")
        }
        let reader: BlobReader
        do {
            reader = try delivered.store.openReader(delivered.sha256)
        } catch {
            logger.error("cannot open a blob", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(imageID)"])
            await forgetVariant(delivered)
            throw DeliveryError.blobDamaged(imageID)
        }
        guard reader.size == delivered.size else {
            logger.error("a blob's size does not match its record", metadata: [LogKey.imageID: "\(imageID)"])
            await forgetVariant(delivered)
            throw DeliveryError.blobDamaged(imageID)
        }
        try await writer.write(.with {
            $0.begin = .with {
                $0.imageID = imageID
                $0.transferSyntaxUid = delivered.transferSyntaxUID
                $0.encoding = delivered.encoding
                $0.sizeBytes = delivered.size
                $0.startOffset = offset
                $0.sha256 = delivered.sha256
                $0.encodingNote = delivered.note
            }
        })
        // Originals are immutable: one whose bytes were checked lately is not hashed again on every read (the
        // receiver still checks the digest in `end`). Variants are always checked: a damaged one can be made again.
        let verify = offset == 0 && (delivered.variantKey != nil || verifiedBlobs.needsCheck(delivered.sha256))
        var hasher = SHA256()
        var next = offset
        while next < delivered.size {
            let data: Data
            do {
                data = try reader.read(offset: next, length: chunkSize)
            } catch {
                logger.error("cannot read a blob", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(imageID)"])
                throw DeliveryError.blobDamaged(imageID)
            }
            if verify { hasher.update(data: data) }
            try await writer.write(.with { $0.chunk = .with { $0.imageID = imageID; $0.offset = next; $0.data = data } })
            next += UInt64(data.count)
        }
        if verify {
            guard Hex.encode(hasher.finalize()) == delivered.sha256 else {
                logger.error("stored bytes do not match their digest", metadata: [LogKey.imageID: "\(imageID)"])
                await forgetVariant(delivered)
                throw DeliveryError.blobDamaged(imageID)
            }
            verifiedBlobs.checked(delivered.sha256)
        }
        try await beforeEnd()
        try await writer.write(.with {
            $0.end = .with {
                $0.imageID = imageID
                $0.digest = .with { $0.sha256 = delivered.sha256; $0.sizeBytes = delivered.size }
            }
        })
    }

    /// Audits one image asked for: delivered (`ok`) or refused (the status name).
    private func account(
        _ imageID: String,
        record: Atrium_V1_ImageRecord?,
        caller: VerifiedCaller,
        outcome: String,
        method: MethodDescriptor = Atrium_V1_Delivery.Method.Fetch.descriptor
    ) {
        audit.record(method, caller: caller, resource: imageID, owner: record?.registrantID ?? "", patientID: record?.patientID ?? "", outcome: outcome, at: now())
    }

    /// Writes one delivery (the image, its delivered bytes) to the usage outbox. The event's ID is derived from
    /// (subscriber, fetch ID, image, encoding): a resumed image counts once.
    private func meter(_ imageID: String, delivered: Deliverable, caller: VerifiedCaller, fetchID: String) throws {
        try meter([usageEvent(imageID, delivered: delivered, caller: caller, fetchID: fetchID)], requestID: caller.requestID)
    }

    /// Writes deliveries to the usage outbox in one transaction.
    private func meter(_ events: [Atrium_V1_UsageEvent], requestID: String) throws {
        do {
            try usage.add(events)
            usagePump.wake()
        } catch {
            logger.error("cannot write the usage outbox", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw DeliveryError.storageUnavailable()
        }
    }

    private func usageEvent(_ imageID: String, delivered: Deliverable, caller: VerifiedCaller, fetchID: String) -> Atrium_V1_UsageEvent {
        Atrium_V1_UsageEvent.with {
            $0.eventID = "delivery:\(caller.subscriberID):\(fetchID):\(imageID):\(delivered.encoding.rawValue)"
            $0.subscriberID = caller.subscriberID
            $0.time = .init(date: now())
            $0.delivery = .with {
                $0.imageID = imageID
                $0.bytes = delivered.size
            }
        }
    }
}

/// Subscribers known to have no budget cap, each until when.
/// Blobs whose bytes were hashed and matched lately, each until when it is due again (an hour). Bounded: at
/// 100 000 entries the table starts over.
final class VerifiedBlobs: Sendable {
    private let due = Mutex<[String: ContinuousClock.Instant]>([:])
    private let interval: Duration

    init(interval: Duration = .seconds(3600)) { self.interval = interval }

    func needsCheck(_ sha256: String) -> Bool {
        let now = ContinuousClock.now
        return due.withLock { ($0[sha256] ?? now) <= now }
    }

    func checked(_ sha256: String) {
        due.withLock { due in
            if due.count >= 100_000 { due.removeAll() }
            due[sha256] = .now + interval
        }
    }
}
