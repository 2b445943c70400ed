import SwiftProtobuf
import AtriumAPI
public import AtriumCore
public import AtriumRuntime
import AtriumStorage
import AtriumDICOM
import Crypto
import Dispatch
public import Foundation
import Synchronization
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
import AtriumBackend

/// The registry: accepts uploads into the blob store, keeps the index, and answers reads with visibility
/// applied. `Registry` (public, through the gateway) and `RegistryInternal` (other services) are both
/// served by this one value; their conformances are in `RegistryService+RPC.swift`.
public struct RegistryService: Sendable {
    let store: RegistryStore
    let blobs: BlobStore
    let configuration: RegistryConfiguration
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    let audit: AuditTrail
    /// The storage quota held for uploads, drawn on without a call per upload.
    let leases: StorageLeases
    /// Drains the settlement outbox to security (``SettlementSender``).
    let settlements: OutboxPump
    /// Drains the notice outbox to receivers' inboxes (``NoticeSender``).
    let notices: OutboxPump
    /// The upload byte path's capabilities (``UploadDoor``).
    let uploadDoor: UploadDoor
    private let uids: UIDGenerator
    let logger: Logger

    /// Opens the index and the blob store, and removes temp files an earlier crash left behind. Storage quotas
    /// are reserved and audit entries written through `security`, and share notices put in inboxes through
    /// `delivery` (clients presenting the registry's certificate).
    /// The clock for expiry, grants and timestamps; injected so that tests can move it.
    let now: @Sendable () -> Date

    public init(
        configuration: RegistryConfiguration,
        security: Connection,
        delivery: Connection,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.now = now
        self.store = try RegistryStore(path: configuration.databasePath)
        self.blobs = try BlobStore(root: configuration.blobDirectory)
        let removed = try blobs.removeStaleTemporaries()
        if removed > 0 {
            logger.notice("removed unfinished uploads left by an earlier stop", metadata: ["count": "\(removed)"])
        }
        self.configuration = configuration
        self.uids = UIDGenerator(root: configuration.uidRoot)
        self.security = security.securityInternal
        self.audit = AuditTrail(security: self.security, logger: logger)
        self.leases = StorageLeases(
            size: configuration.storageLeaseBytes, window: configuration.storageLeaseWindow, store: store, security: self.security, logger: logger
        )
        let sender = SettlementSender(store: store, security: self.security, logger: logger)
        // Woken by each upload, batched over 100 ms so that a burst of uploads settles in one call. Leases past their
        // window are retired on the same beat.
        let leases = self.leases
        self.settlements = OutboxPump(interval: .seconds(2), batchDelay: .milliseconds(100)) {
            await leases.retireExpired()
            return await sender.deliver()
        }
        // Share notices: one recipient each.
        let noticeStore = self.store
        let notifier = InboxNoticeSender(delivery: delivery.deliveryInternal, logger: logger) { limit in
            try await noticeStore.pendingNotices(limit: limit).map { OwedNotice(sequence: $0.sequence, recipients: [$0.recipientID], entryKey: $0.entryKey, entry: $0.entry) }
        } remove: { sequence in
            try await noticeStore.removeNotice(sequence)
        }
        self.notices = OutboxPump(interval: .seconds(2)) { await notifier.deliver() }
        self.uploadDoor = UploadDoor(lifetime: configuration.uploadCapabilityLifetime, maxBytes: configuration.maxImageBytes)
        self.logger = logger
    }

    /// What a data plane hands `POST /v1/uploads/<token>` to: this registry's ingest.
    public var uploadIntake: any UploadIntake { RegistryUploads(service: self) }

    /// Single-use capabilities to upload over the data plane (see ``UploadDoor``).
    func authorizeUpload(_ request: Atrium_V1_AuthorizeUploadRequest, caller: VerifiedCaller) throws -> Atrium_V1_AuthorizeUploadResponse {
        try uploadDoor.authorize(count: request.count, caller: caller, now: now())
    }

    /// What the process must run besides the server: the audit trail and the two outboxes.
    public var background: [any Service] { [audit, settlements, notices] }

    /// Every RPC service the registry process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [PublicRegistry(service: self), InternalRegistry(service: self)]
    }

    // MARK: - Register

    /// One upload message after the header: a chunk, or something that must not follow a header.
    enum UploadPart: Sendable {
        case chunk(Atrium_V1_Chunk)
        case unexpected
    }

    /// Registers one object in four steps: ``receiveUpload(_:from:registrant:)`` streams it into a temp blob
    /// while hashing, ``parseUpload(_:header:registrant:method:)`` parses what was stored and settles idempotency,
    /// ``reserve(_:registrant:)`` draws the quota, and ``commitUpload(_:parsed:draw:header:registrant:method:)``
    /// makes the blob durable and commits the record. Returns only once both are durable. Malformed input is refused
    /// before anything is stored. `method` names the call in the audit log: `Register` (over gRPC or the byte path)
    /// or `RegisterFor` (a processing result).
    func register(
        registrant: VerifiedCaller,
        header: Atrium_V1_RegisterHeader,
        method: MethodDescriptor = Atrium_V1_Registry.Method.Register.descriptor,
        next: () async throws -> UploadPart?
    ) async throws -> Atrium_V1_RegisterResponse {
        var upload = try await receiveUpload(header, from: next, registrant: registrant)
        // Whatever happens below, a writer that was not committed deletes its temp file (after the writes queued).
        defer { upload.held.abandon() }
        let parsed: ParsedUpload
        do {
            switch try await parseUpload(upload, header: header, registrant: registrant, method: method) {
            case .answered(let answer):
                await upload.giveBackEarlyDraw(to: leases, registrant: registrant)
                return answer
            case .parsed(let result):
                parsed = result
            }
        } catch {
            await upload.giveBackEarlyDraw(to: leases, registrant: registrant)
            throw error
        }
        upload.stages.mark("parse")
        let draw = try await reserve(upload, registrant: registrant)
        upload.stages.mark("reserve")
        return try await commitUpload(&upload, parsed: parsed, draw: draw, header: header, registrant: registrant, method: method)
    }

    /// An upload received into a temp blob, not yet durable.
    struct ReceivedUpload {
        /// The blob being written.
        var held: HeldUpload
        /// The object the registry wraps raw pixels in, when the upload is raw pixels.
        var wrapper: RawPixelsWrapper?
        /// The quota drawn before the bytes arrived, when the size was known up front.
        var earlyDraw: StorageLeases.Draw?
        /// How long each step took, for the log.
        var stages: StageClock

        /// Gives back an early draw when the upload goes no further.
        func giveBackEarlyDraw(to leases: StorageLeases, registrant: VerifiedCaller) async {
            if let earlyDraw { await leases.giveBack(earlyDraw, subscriberID: registrant.subscriberID, requestID: registrant.requestID) }
        }
    }

    /// What parsing a stored upload found: the object's metadata and thumbnail, and the acquisition conditions to
    /// record (the object's, merged with the header's).
    struct ParsedUpload {
        var image: ParsedImage
        var conditions: Data
    }

    /// The outcome of parsing: the upload to commit, or the answer already given for the same object.
    enum ParseOutcome {
        case parsed(ParsedUpload)
        case answered(Atrium_V1_RegisterResponse)
    }

    /// Step 1, receive: checks the header and its provenance, starts the blob, draws the quota early when the size is
    /// known (an upload over quota is refused before it is sent), and writes every chunk as it comes. On failure
    /// nothing stays: the temp blob is abandoned and an early draw given back.
    private func receiveUpload(_ header: Atrium_V1_RegisterHeader, from next: () async throws -> UploadPart?, registrant: VerifiedCaller) async throws -> ReceivedUpload {
        try validate(header)
        // Provenance names only images the registrant may see.
        for source in header.derivedFromImageIds { _ = try visibleImage(id: source, caller: registrant) }
        let wrapper: RawPixelsWrapper? =
            header.format == .rawPixels
            ? try RawPixelsWrapper(header.raw, comment: header.comment, uids: uids, maximumBytes: configuration.maxImageBytes)
            : nil
        let writer: BlobWriter
        do {
            writer = try blobs.makeWriter()
        } catch {
            logger.error("cannot start a blob", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            throw RegistryError.storageUnavailable()
        }
        var upload = ReceivedUpload(held: HeldUpload(writer: writer), wrapper: wrapper, earlyDraw: nil, stages: StageClock())
        do {
            // A draw is local while the subscriber's lease lasts (``StorageLeases``).
            let knownSize: UInt64? = wrapper.map { UInt64($0.prefix.count) + $0.pixelBytes + $0.pixelBytes % 2 } ?? (header.sizeBytes > 0 ? header.sizeBytes : nil)
            if let knownSize { upload.earlyDraw = try await leases.draw(knownSize, for: registrant.subscriberID, requestID: registrant.requestID) }
            let held = upload.held
            if let wrapper { try await write(Data(wrapper.prefix), to: held, requestID: registrant.requestID) }
            let rawDigest = try await receive(next, into: held, wrapper: wrapper, header: header, requestID: registrant.requestID)
            if let wrapper, wrapper.pixelBytes % 2 == 1 { try await write(Data([0]), to: held, requestID: registrant.requestID) }
            // The header's digest describes what the caller sent: for raw pixels, the pixels (checked here), not the
            // object the registry wraps them in; for an object, the object (checked when it is stored).
            if let rawDigest, !header.sha256.isEmpty, rawDigest != header.sha256 {
                throw RegistryError.invalidArgument("the upload does not match header.sha256: expected \(header.sha256), received \(rawDigest)")
            }
        } catch {
            await upload.giveBackEarlyDraw(to: leases, registrant: registrant)
            upload.held.abandon()
            throw error
        }
        upload.stages.mark("receive")
        return upload
    }

    /// Step 2, parse: finishes the blob's writes (checking an object's digest against the header's) while parsing
    /// it, then answers at once when the registrant already holds the same object (the common idempotent case; the
    /// commit checks again).
    private func parseUpload(_ upload: ReceivedUpload, header: Atrium_V1_RegisterHeader, registrant: VerifiedCaller, method: MethodDescriptor) async throws -> ParseOutcome {
        let expected = upload.wrapper == nil && !header.sha256.isEmpty ? header.sha256 : nil
        let parsed = try await store(upload.held, expectingSHA256: expected, requestID: registrant.requestID)
        guard let sop = parsed.metadata.sopInstanceUID else { throw RegistryError.invalidArgument("the object has no SOP Instance UID") }
        if let current = try readIndex(registrant.requestID, { try store.currentImage(registrantID: registrant.subscriberID, sopInstanceUID: sop) }),
            let answer = try idempotent(current, sha256: upload.held.writer.sha256, supersede: header.supersede, registrant: registrant, method: method)
        {
            return .answered(answer)
        }
        return .parsed(ParsedUpload(image: parsed, conditions: try Conditions.merge(parsed.conditions, header.conditions).serializedData()))
    }

    /// Step 3, reserve: the quota for the stored size, or the draw taken before the bytes arrived.
    private func reserve(_ upload: ReceivedUpload, registrant: VerifiedCaller) async throws -> StorageLeases.Draw {
        if let early = upload.earlyDraw { return early }
        return try await leases.draw(upload.held.writer.byteCount, for: registrant.subscriberID, requestID: registrant.requestID)
    }

    /// Step 4, commit: makes the blob durable, then commits the record with its conditions, thumbnail and the
    /// quota settlement in one transaction. A concurrent registration of the same object that committed first is
    /// answered as a repeat. The draw is given back whenever nothing was stored.
    private func commitUpload(
        _ upload: inout ReceivedUpload,
        parsed: ParsedUpload,
        draw: StorageLeases.Draw,
        header: Atrium_V1_RegisterHeader,
        registrant: VerifiedCaller,
        method: MethodDescriptor
    ) async throws -> Atrium_V1_RegisterResponse {
        /// Gives the draw back when the upload stored nothing.
        func giveBack() async { await leases.giveBack(draw, subscriberID: registrant.subscriberID, requestID: registrant.requestID) }
        let commit: BlobCommit
        do {
            commit = try await commitOrFail(upload.held.writer, requestID: registrant.requestID)
        } catch {
            await giveBack()
            throw error
        }
        upload.stages.mark("blob")
        let now = self.now()
        let row = ImageRow(
            id: Identifier.make(prefix: "img"),
            registrant: registrant.subscriberID,
            metadata: parsed.image.metadata,
            header: header,
            commit: commit,
            conditions: parsed.conditions,
            thumbnailSHA256: parsed.image.thumbnail?.sha256,
            pixelNote: parsed.image.pixelNote,
            registeredAt: now
        )
        let first = ConditionsRow(imageID: row.id, version: 1, conditions: row.conditions, recordedBy: registrant.subscriberID, recordedAt: now, reason: "registered")
        let outcome: CommitOutcome
        do {
            outcome = try await store.commit(row, conditions: first, thumbnail: parsed.image.thumbnail, draw: draw, supersede: header.supersede)
        } catch {
            logger.error("cannot commit an image record", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            await giveBack()
            throw RegistryError.storageUnavailable()
        }
        upload.stages.mark("index")
        let alreadyHad: Bool
        switch outcome {
        case .inserted(let had):
            alreadyHad = had
        case .duplicate(let current), .conflict(let current):
            // A concurrent registration of the same SOP instance committed first.
            await giveBack()
            if let answer = try idempotent(current, sha256: commit.sha256, supersede: false, registrant: registrant, method: method) { return answer }
            throw RegistryError.storageUnavailable()
        }
        // The settlement is durable in the outbox, in the record's own transaction; it goes to security in the
        // background, batched with others, and the reservation counts against the quota until it arrives.
        settlements.wake()
        record(registrant, method, image: row)
        var metadata: Logger.Metadata = [
            LogKey.imageID: "\(row.id)", LogKey.subscriberID: "\(registrant.subscriberID)", LogKey.requestID: "\(registrant.requestID)",
            "bytes": "\(commit.size)",
        ]
        for (stage, milliseconds) in upload.stages.laps { metadata["ms.\(stage)"] = "\(milliseconds)" }
        logger.info("registered", metadata: metadata)
        return .with {
            $0.imageID = row.id
            $0.digest = .with { $0.sha256 = commit.sha256; $0.sizeBytes = commit.size }
            $0.deduplicated = alreadyHad
        }
    }

    /// The answer when the registrant already holds this SOP instance: the same ID for the same bytes,
    /// ALREADY_EXISTS for other bytes unless superseding (then `nil`: go on).
    private func idempotent(_ current: ImageRow, sha256: String, supersede: Bool, registrant: VerifiedCaller, method: MethodDescriptor) throws -> Atrium_V1_RegisterResponse? {
        if current.sha256 == sha256 {
            record(registrant, method, image: current, outcome: "deduplicated")
            return .with {
                $0.imageID = current.id
                $0.digest = .with { $0.sha256 = current.sha256; $0.sizeBytes = UInt64(current.sizeBytes) }
                $0.deduplicated = true
            }
        }
        guard supersede else {
            throw RegistryError.alreadyExists(
                "SOP instance \(current.sopInstanceUID ?? "") is registered as image '\(current.id)' with other bytes; set header.supersede to replace it"
            )
        }
        return nil
    }

    /// Receives the chunks into `held`, which writes them to the blob as they come; checks the offsets, the size
    /// limit and `header.size_bytes`. Returns the digest of the raw pixels received, when the upload is raw pixels
    /// (else `nil`: the blob's digest is the upload's).
    private func receive(
        _ next: () async throws -> UploadPart?,
        into held: HeldUpload,
        wrapper: RawPixelsWrapper?,
        header: Atrium_V1_RegisterHeader,
        requestID: String
    ) async throws -> String? {
        var received: UInt64 = 0
        var rawHasher = wrapper == nil ? nil : SHA256()
        let limit = wrapper?.pixelBytes ?? configuration.maxImageBytes
        while let part = try await next() {
            guard case .chunk(let chunk) = part else { throw RegistryError.invalidArgument("only chunks may follow the header") }
            guard chunk.offset == received else {
                throw RegistryError.invalidArgument("chunk offset \(chunk.offset) does not follow the \(received) bytes received")
            }
            guard received + UInt64(chunk.data.count) <= limit else {
                throw RegistryError.invalidArgument(
                    wrapper == nil
                        ? "upload exceeds the \(limit)-byte limit per image"
                        : "more pixel bytes than raw announces (\(limit))"
                )
            }
            rawHasher?.update(data: chunk.data)
            try await write(chunk.data, to: held, requestID: requestID)
            received += UInt64(chunk.data.count)
        }
        if let wrapper, received != wrapper.pixelBytes {
            throw RegistryError.invalidArgument("raw announces \(wrapper.pixelBytes) pixel bytes; \(received) arrived")
        }
        // The header's size describes what the caller sent: for raw pixels, the pixels.
        if header.sizeBytes != 0 && header.sizeBytes != received {
            throw RegistryError.invalidArgument("the upload does not match header.size_bytes: expected \(header.sizeBytes) bytes, received \(received)")
        }
        return rawHasher.map { Hex.encode($0.finalize()) }
    }

    /// Queues `data` to be written to the blob.
    private func write(_ data: Data, to held: HeldUpload, requestID: String) async throws {
        do {
            try await held.append(data)
        } catch {
            logger.error("blob write failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.storageUnavailable()
        }
    }

    /// Makes the upload durable (the last writes, the digest check against `expectedSHA256`, then fsync, on its
    /// queue) while it is parsed (with its thumbnail) on a dispatch thread: from memory when the whole upload was
    /// kept, else read back from the temp file once every chunk is written. A digest mismatch is reported before
    /// whatever the parse found. Nothing here runs on the threads that run Swift tasks.
    private func store(_ held: HeldUpload, expectingSHA256 expectedSHA256: String?, requestID: String) async throws -> ParsedImage {
        let edge = configuration.thumbnailEdge
        let logger = self.logger
        let whole = held.whole
        let kept = held.kept
        func failed(_ error: any Error) -> RegistryError {
            if let mismatch = error as? StorageError, mismatch.isDigestMismatch {
                return .invalidArgument("the upload does not match header.sha256: \(mismatch.detail)")
            }
            logger.error("blob write or fsync failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            return RegistryError.storageUnavailable()
        }
        if !whole {
            do { try await held.written() } catch { throw failed(error) }
        }
        async let synced: Void = held.finish(expectingSHA256: expectedSHA256)
        nonisolated(unsafe) let writer = held.writer
        let result: Result<ParsedImage, any Error>
        do {
            result = .success(
                try await offload {
                    if whole {
                        var bytes: [UInt8] = []
                        bytes.reserveCapacity(kept.reduce(0) { $0 + $1.count })
                        for chunk in kept { bytes.append(contentsOf: chunk) }
                        return try Ingest.parse(size: UInt64(bytes.count), thumbnailEdge: edge) { offset, length in
                            let end = Int(offset) + min(length, bytes.count - Int(offset))
                            return offset == 0 && end == bytes.count ? bytes : Array(bytes[Int(offset)..<end])
                        }
                    }
                    // Every chunk is written: reading the temp file back is safe while the fsync runs.
                    return try Ingest.parse(size: writer.byteCount, thumbnailEdge: edge) { offset, length in
                        do {
                            return try writer.contents(offset: offset, length: length)
                        } catch {
                            logger.error("cannot read back an upload", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
                            throw RegistryError.storageUnavailable()
                        }
                    }
                }
            )
        } catch {
            result = .failure(error)
        }
        do { try await synced } catch { throw failed(error) }
        return try result.get()
    }


    // MARK: - Audit

    /// Appends an access to patient data to the audit log.
    func record(_ caller: VerifiedCaller, _ method: MethodDescriptor, image row: ImageRow, outcome: String = "ok") {
        record(caller, method, resource: row.id, owner: row.registrantID, patientID: row.patientID, outcome: outcome)
    }

    /// Appends a call on `resource` (owned by `owner`, about `patientID`) to the audit log.
    func record(_ caller: VerifiedCaller, _ method: MethodDescriptor, resource: String, owner: String, patientID: String?, outcome: String = "ok") {
        audit.record(method, caller: caller, resource: resource, owner: owner, patientID: patientID ?? "", outcome: outcome, at: now())
    }

    private func validate(_ header: Atrium_V1_RegisterHeader) throws {
        switch header.format {
        case .dicomPart10, .rawPixels:
            break
        case .unspecified, .UNRECOGNIZED:
            throw RegistryError.invalidArgument("header.format must be FORMAT_DICOM_PART10 or FORMAT_RAW_PIXELS")
        }
        if !header.sha256.isEmpty && !Hex.isSHA256(header.sha256) {
            throw RegistryError.invalidArgument("header.sha256 must be 64 lower-case hex characters")
        }
        if header.sizeBytes > configuration.maxImageBytes {
            throw RegistryError.invalidArgument("header.size_bytes exceeds the \(configuration.maxImageBytes)-byte limit per image")
        }
        if header.comment.utf8.count > 1024 {
            throw RegistryError.invalidArgument("header.comment is longer than 1024 bytes")
        }
        if header.format == .rawPixels && !header.hasRaw {
            throw RegistryError.invalidArgument("header.raw is required for FORMAT_RAW_PIXELS")
        }
        try Conditions.validate(header.conditions, field: "header.conditions")
        guard header.derivedFromImageIds.count <= 10_000, header.derivedFromImageIds.allSatisfy({ (1...64).contains($0.utf8.count) && !$0.contains(" ") }) else {
            throw RegistryError.invalidArgument("header.derived_from_image_ids must be at most 10000 image IDs")
        }
    }

    private func commitOrFail(_ writer: BlobWriter, requestID: String) async throws -> BlobCommit {
        do {
            return try await writer.commitOffloaded()
        } catch {
            logger.error("blob commit failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.storageUnavailable()
        }
    }

    // MARK: - Reads

    /// The record of `id` if `caller` may see it; NOT_FOUND otherwise (existence is not leaked).
    func visibleImage(id: String, caller: VerifiedCaller) throws -> ImageRow {
        guard !id.isEmpty, id.utf8.count <= 64 else { throw RegistryError.invalidArgument("image_id must be 1 to 64 bytes") }
        let row = try readIndex(caller.requestID) { try store.image(id: id) }
        guard let row else { throw RegistryError.imageNotFound(id) }
        // Most reads are the registrant's own: the grant table is read only when needed.
        if Audience(caller: caller, hasGrants: false).seesDirectly(row) { return row }
        guard try readIndex(caller.requestID, { try store.grantCovers(imageID: row.id, receiverID: caller.subscriberID, at: now()) }) else {
            throw RegistryError.imageNotFound(id)
        }
        return row
    }

    /// Who `caller` is for visibility in listings: its identity, and whether any grant applies to it now.
    func audience(of caller: VerifiedCaller) throws -> Audience {
        if caller.kind == .operator { return Audience(caller: caller, hasGrants: false) }
        let hasGrants = try readIndex(caller.requestID) { try store.hasActiveGrants(receiverID: caller.subscriberID, at: now()) }
        return Audience(caller: caller, hasGrants: hasGrants)
    }

    func readIndex<T>(_ requestID: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as RegistryError {
            throw error
        } catch {
            logger.error("cannot read the index", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.storageUnavailable()
        }
    }
}

extension ImageRow {
    /// The record of a newly stored object.
    init(
        id: String,
        registrant: String,
        metadata: ImageMetadata,
        header: Atrium_V1_RegisterHeader,
        commit: BlobCommit,
        conditions: Data,
        thumbnailSHA256: String?,
        pixelNote: String?,
        registeredAt: Date
    ) {
        self.init(
            id: id,
            registrantID: registrant,
            patientID: metadata.patientID,
            patientName: metadata.patientName,
            studyUID: metadata.studyInstanceUID,
            seriesUID: metadata.seriesInstanceUID,
            sopInstanceUID: metadata.sopInstanceUID,
            sopClassUID: metadata.sopClassUID,
            modality: metadata.modality,
            acquiredAt: metadata.acquiredAt,
            deviceID: metadata.deviceID,
            bodyPart: metadata.bodyPart,
            comment: header.comment.isEmpty ? nil : header.comment,
            rows: metadata.rows,
            columns: metadata.columns,
            bitsAllocated: metadata.bitsAllocated,
            frames: metadata.frames,
            transferSyntaxUID: metadata.transferSyntaxUID,
            sizeBytes: Int64(commit.size),
            sha256: commit.sha256,
            registeredAt: registeredAt,
            instanceNumber: metadata.instanceNumber,
            slicePosition: metadata.slicePosition,
            conditions: conditions,
            conditionsVersion: 1,
            supersedesImageID: nil,
            supersededBy: nil,
            derivedFrom: header.derivedFromImageIds.isEmpty ? nil : header.derivedFromImageIds.joined(separator: " "),
            thumbnailSHA256: thumbnailSHA256,
            pixelNote: pixelNote,
            orderTime: Int64(((metadata.acquiredAt ?? registeredAt).timeIntervalSince1970 * 1000).rounded(.down))
        )
    }

    /// The record as the API returns it.
    var message: Atrium_V1_ImageRecord {
        .with {
            $0.imageID = id
            $0.registrantID = registrantID
            $0.patientID = patientID ?? ""
            $0.patientName = patientName ?? ""
            $0.studyInstanceUid = studyUID ?? ""
            $0.seriesInstanceUid = seriesUID ?? ""
            $0.sopInstanceUid = sopInstanceUID ?? ""
            $0.sopClassUid = sopClassUID ?? ""
            $0.modality = modality ?? ""
            if let acquiredAt { $0.acquiredAt = .init(date: acquiredAt) }
            $0.deviceID = deviceID ?? ""
            $0.bodyPart = bodyPart ?? ""
            $0.comment = comment ?? ""
            $0.rows = UInt32(clamping: rows ?? 0)
            $0.columns = UInt32(clamping: columns ?? 0)
            $0.bitsAllocated = UInt32(clamping: bitsAllocated ?? 0)
            $0.frames = UInt32(clamping: frames ?? 0)
            $0.transferSyntaxUid = transferSyntaxUID ?? ""
            $0.digest = .with { $0.sha256 = sha256; $0.sizeBytes = UInt64(sizeBytes) }
            $0.hasThumbnail_p = thumbnailSHA256 != nil
            $0.conditions = (try? Atrium_V1_AcquisitionConditions(serializedBytes: conditions)) ?? .init()
            $0.conditionsVersion = UInt32(conditionsVersion)
            $0.registeredAt = .init(date: registeredAt)
            $0.derivedFromImageIds = derivedFrom?.split(separator: " ").map(String.init) ?? []
            $0.supersedesImageID = supersedesImageID ?? ""
            $0.supersededByImageID = supersededBy ?? ""
            $0.instanceNumber = Int32(clamping: instanceNumber ?? 0)
            $0.slicePositionMm = slicePosition ?? 0
        }
    }
}

/// Milliseconds spent in each stage of a registration, for its log line.
struct StageClock {
    private var last = ContinuousClock.now
    private(set) var laps: [(String, Int)] = []

    mutating func mark(_ stage: String) {
        let now = ContinuousClock.now
        let elapsed = now - last
        laps.append((stage, Int(elapsed.wholeMilliseconds)))
        last = now
    }
}

/// An upload's bytes on their way into a ``BlobWriter``: each chunk is written, in order, on a serial dispatch queue
/// of its own as soon as it arrives, so the writes (a millisecond or more for each new half-megabyte of page cache on
/// this machine) overlap the receiving and never block a thread that runs Swift tasks. An upload of up to
/// ``keepLimit`` bytes is also kept, so that a CT or MR slice (a few hundred kB) is parsed from memory instead of
/// read back. The receiver waits for the queue when more than ``backlogLimit`` bytes are still unwritten: an upload
/// holds at most about 6 MiB of memory, whatever its size.
final class HeldUpload: @unchecked Sendable {
    /// The largest upload kept whole for parsing.
    static let keepLimit = 4 << 20
    /// Bytes allowed to wait for the queue.
    static let backlogLimit = 2 << 20

    // `writer` is used only on `queue`, and by the owner once ``written()`` or ``finish(expectingSHA256:)`` returned.
    nonisolated(unsafe) let writer: BlobWriter
    /// Serial per upload, on the shared pool (not a thread of its own each).
    private let queue = DispatchQueue(label: "atrium.registry.upload", target: .global(qos: .userInitiated))
    private struct State {
        var unwritten = 0
        var failure: StorageError?
    }
    private let state = Mutex(State())
    /// The whole upload, while it is at most ``keepLimit`` bytes (owner only).
    private(set) var kept: [Data] = []
    private var keptCount = 0
    /// Whether `kept` is the whole upload (owner only).
    private(set) var whole = true

    init(writer: BlobWriter) { self.writer = writer }

    /// Queues `data` to be written; waits first if too much is still unwritten. Throws a write that failed.
    func append(_ data: Data) async throws {
        if whole {
            if keptCount + data.count <= Self.keepLimit {
                kept.append(data)
                keptCount += data.count
            } else {
                whole = false
                kept = []
            }
        }
        let backlog = state.withLock { state -> Int in
            state.unwritten += data.count
            return state.unwritten
        }
        queue.async {
            let writer = self.writer
            let failed = self.state.withLock { $0.failure != nil }
            var failure: StorageError?
            if !failed {
                do throws(StorageError) { try writer.write(data) } catch { failure = error }
            }
            self.state.withLock { state in
                state.unwritten -= data.count
                if state.failure == nil { state.failure = failure }
            }
        }
        if backlog > Self.backlogLimit { try await drain() }
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    /// Waits until everything queued is written (and `then` ran after it, on the queue).
    private func drain(then: @escaping @Sendable () throws(StorageError) -> Void = {}) async throws {
        let result: Result<Void, StorageError> = await withCheckedContinuation { continuation in
            queue.async {
                if let failure = self.state.withLock({ $0.failure }) { return continuation.resume(returning: .failure(failure)) }
                continuation.resume(returning: Result { () throws(StorageError) in try then() })
            }
        }
        try result.get()
    }

    /// Waits until every chunk is written.
    func written() async throws { try await drain() }

    /// Discards the blob unless it was committed, after every write queued before.
    func abandon() {
        queue.async { self.writer.abort() }
    }

    /// Waits until every chunk is written, checked against `expectedSHA256` (a `digestMismatch` error, without an
    /// fsync) and fsynced.
    func finish(expectingSHA256 expectedSHA256: String? = nil) async throws {
        try await drain { () throws(StorageError) in
            if let expectedSHA256 {
                let received = self.writer.sha256
                guard received == expectedSHA256 else { throw .digestMismatch("expected \(expectedSHA256), received \(received)") }
            }
            try self.writer.sync()
        }
    }
}
