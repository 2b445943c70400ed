import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import Foundation
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle

/// The registry: accepts uploads into the blob store, keeps the index, and answers reads with visibility
/// applied. `Registry` (public, through the gateway) and `RegistryInternal` (other services) are both
/// served by this one value; their conformances are in `RegistryService+RPC.swift`.
public struct RegistryService: Sendable {
    private let store: RegistryStore
    private let blobs: BlobStore
    private let configuration: RegistryConfiguration
    private let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
    private let audit: AuditTrail
    private let settlements: SettlementSender
    private let logger: Logger

    /// Opens the index and the blob store, and removes temp files an earlier crash left behind. Storage quotas
    /// are reserved and audit entries written through `security` (a client presenting the registry's certificate).
    public init(configuration: RegistryConfiguration, security: GRPCClient<HTTP2ClientTransport.Posix>, logger: Logger) throws {
        self.store = try RegistryStore(path: configuration.databasePath)
        self.blobs = try BlobStore(root: configuration.blobDirectory)
        let removed = try blobs.removeStaleTemporaries()
        if removed > 0 {
            logger.notice("removed unfinished uploads left by an earlier stop", metadata: ["count": "\(removed)"])
        }
        self.configuration = configuration
        self.security = Atrium_V1_SecurityInternal.Client(wrapping: security)
        self.audit = AuditTrail(security: security, logger: logger)
        self.settlements = SettlementSender(store: store, security: self.security, logger: logger)
        self.logger = logger
    }

    /// What the process must run besides the server: the audit trail and the settlement retrier.
    public var background: [any Service] { [audit, settlements] }

    /// Every RPC service the registry process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [PublicRegistry(service: self), InternalRegistry(service: self)]
    }

    // MARK: - Register

    /// Streams an upload into the blob store, then commits its record. Returns only once both are durable.
    func register(
        registrant: VerifiedCaller,
        parts: some AsyncSequence<Atrium_V1_RegisterRequest, any Error>
    ) async throws -> Atrium_V1_RegisterResponse {
        var iterator = parts.makeAsyncIterator()
        guard let first = try await iterator.next(), case .header(let header)? = first.part else {
            throw RegistryError.invalidArgument("the first message of Register must be a header")
        }
        try validate(header)
        let writer: BlobWriter
        do {
            writer = try blobs.makeWriter()
        } catch {
            logger.error("cannot start a blob", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            throw RegistryError.storageUnavailable
        }
        var magic = PartTenMagicCheck()
        while let message = try await iterator.next() {
            guard case .chunk(let chunk)? = message.part else {
                writer.abort()
                throw RegistryError.invalidArgument("only chunks may follow the header")
            }
            guard chunk.offset == writer.byteCount else {
                writer.abort()
                throw RegistryError.invalidArgument("chunk offset \(chunk.offset) does not follow the \(writer.byteCount) bytes received")
            }
            guard writer.byteCount + UInt64(chunk.data.count) <= configuration.maxImageBytes else {
                writer.abort()
                throw RegistryError.invalidArgument("upload exceeds the \(configuration.maxImageBytes)-byte limit per image")
            }
            if let problem = magic.feed(chunk.data) {
                writer.abort()
                throw RegistryError.invalidArgument(problem)
            }
            try writeOrFail(writer, chunk.data, requestID: registrant.requestID)
        }
        if let problem = magic.finish() {
            writer.abort()
            throw RegistryError.invalidArgument(problem)
        }
        let reservationID = Identifier.make(prefix: "rsv")
        do {
            try await reserve(writer.byteCount, for: registrant, reservationID: reservationID)
        } catch {
            writer.abort()
            throw error
        }
        let commit: BlobCommit
        do {
            commit = try await commitOrFail(writer, header: header, requestID: registrant.requestID)
        } catch {
            await release(reservationID, requestID: registrant.requestID)
            throw error
        }
        let row = ImageRow(
            id: Identifier.make(prefix: "img"),
            registrantID: registrant.subscriberID,
            comment: header.comment.isEmpty ? nil : header.comment,
            sizeBytes: Int64(commit.size),
            sha256: commit.sha256,
            registeredAt: Date()
        )
        let alreadyHad: Bool
        do {
            // Deduplication is reported against the caller's own images only: whether another subscriber
            // stored the same bytes is not the caller's to learn.
            alreadyHad = try await store.commit(row, reservationID: reservationID)
        } catch {
            logger.error("cannot commit an image record", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            await release(reservationID, requestID: registrant.requestID)
            throw RegistryError.storageUnavailable
        }
        // The settlement is durable in the outbox, in the record's own transaction; it goes to security in the
        // background, batched with others, and the reservation counts against the quota until it arrives.
        settlements.wake()
        record(registrant, "Register", image: row)
        logger.info("registered", metadata: [
            LogKey.imageID: "\(row.id)", LogKey.subscriberID: "\(registrant.subscriberID)", LogKey.requestID: "\(registrant.requestID)",
            "bytes": "\(commit.size)",
        ])
        return .with {
            $0.imageID = row.id
            $0.digest = .with { $0.sha256 = commit.sha256; $0.sizeBytes = commit.size }
            $0.deduplicated = alreadyHad
        }
    }

    // MARK: - Quota and audit

    /// Reserves `bytes` of the registrant's quota; RESOURCE_EXHAUSTED (with quota and usage) when it is full.
    private func reserve(_ bytes: UInt64, for registrant: VerifiedCaller, reservationID: String) async throws {
        do {
            _ = try await security.reserveStorage(
                .with {
                    $0.subscriberID = registrant.subscriberID
                    $0.bytes = bytes
                    $0.reservationID = reservationID
                },
                options: .internalCall
            )
        } catch let error as RPCError where error.code == .resourceExhausted || error.code == .failedPrecondition {
            throw RPCError(code: error.code == .resourceExhausted ? .resourceExhausted : .permissionDenied, message: error.message)
        } catch {
            logger.error("cannot reserve storage", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(registrant.requestID)"])
            throw RegistryError.quotaUnavailable
        }
    }

    /// Gives a reservation back after a failed upload. Retried briefly; one that cannot be released stops
    /// holding its bytes when it expires (an hour), which is harmless.
    private func release(_ reservationID: String, requestID: String) async {
        for attempt in 1...3 {
            do {
                _ = try await security.settleReservation(.with { $0.reservationID = reservationID; $0.commit = false }, options: .internalCall)
                return
            } catch {
                if attempt == 3 {
                    logger.warning(
                        "cannot release a storage reservation; it expires on its own",
                        metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)", "reservation": "\(reservationID)"]
                    )
                }
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    /// Appends an access to patient data to the audit log.
    func record(_ caller: VerifiedCaller, _ method: String, image row: ImageRow, outcome: String = "ok") {
        audit.enqueue(
            .with {
                $0.time = .init(date: Date())
                $0.subscriberID = caller.subscriberID
                $0.method = "atrium.v1.Registry/\(method)"
                $0.resourceID = row.id
                $0.resourceOwnerID = row.registrantID
                $0.patientID = row.patientID ?? ""
                $0.outcome = outcome
                $0.requestID = caller.requestID
            }
        )
    }

    private func validate(_ header: Atrium_V1_RegisterHeader) throws {
        switch header.format {
        case .dicomPart10:
            break
        case .rawPixels:
            throw RegistryError.unimplemented("raw-pixel registration arrives with the registry issue (#4); send DICOM Part 10")
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
    }

    private func writeOrFail(_ writer: BlobWriter, _ data: Data, requestID: String) throws {
        do {
            try writer.write(data)
        } catch {
            writer.abort()
            logger.error("blob write failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.storageUnavailable
        }
    }

    private func commitOrFail(_ writer: BlobWriter, header: Atrium_V1_RegisterHeader, requestID: String) async throws -> BlobCommit {
        do {
            return try await writer.commitOffloaded(
                expectingSHA256: header.sha256.isEmpty ? nil : header.sha256,
                size: header.sizeBytes == 0 ? nil : header.sizeBytes
            )
        } catch {
            if error.isDigestMismatch {
                throw RegistryError.invalidArgument("the upload does not match header.sha256: \(error.detail)")
            }
            if error.isSizeMismatch {
                throw RegistryError.invalidArgument("the upload does not match header.size_bytes: \(error.detail)")
            }
            logger.error("blob commit failed", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.storageUnavailable
        }
    }

    // MARK: - Reads

    /// The record of `id` if `caller` may see it; NOT_FOUND otherwise (existence is not leaked).
    func visibleImage(id: String, caller: VerifiedCaller) throws -> ImageRow {
        let row: ImageRow?
        do {
            row = try store.image(id: id)
        } catch {
            logger.error("cannot read the index", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw RegistryError.storageUnavailable
        }
        guard let row, Visibility.canSee(row, caller: caller) else { throw RegistryError.imageNotFound(id) }
        return row
    }

    /// Opens the stored bytes of a visible image.
    func openBlob(of row: ImageRow, requestID: String) throws -> BlobReader {
        do {
            let reader = try blobs.openReader(row.sha256)
            guard reader.size == UInt64(row.sizeBytes) else { throw RegistryError.blobDamaged(row.id) }
            return reader
        } catch let error as RegistryError {
            throw error
        } catch {
            logger.error("cannot open a blob", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(row.id)", LogKey.requestID: "\(requestID)"])
            throw RegistryError.blobDamaged(row.id)
        }
    }
}

extension ImageRow {
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
            $0.rows = UInt32(rows ?? 0)
            $0.columns = UInt32(columns ?? 0)
            $0.bitsAllocated = UInt32(bitsAllocated ?? 0)
            $0.frames = UInt32(frames ?? 0)
            $0.transferSyntaxUid = transferSyntaxUID ?? ""
            $0.digest = .with { $0.sha256 = sha256; $0.sizeBytes = UInt64(sizeBytes) }
            $0.registeredAt = .init(date: registeredAt)
        }
    }
}

/// Checks, as bytes stream in, that an upload starts like a DICOM Part 10 file: a 128-byte preamble, then
/// `DICM`. Full parsing of the dataset arrives with the registry issue (#4).
struct PartTenMagicCheck {
    private var head: [UInt8] = []
    private var done = false

    /// Feeds the next bytes; returns a problem once the marker is known to be missing.
    mutating func feed(_ data: Data) -> String? {
        guard !done else { return nil }
        head.append(contentsOf: data.prefix(132 - head.count))
        guard head.count == 132 else { return nil }
        done = true
        return head[128..<132].elementsEqual("DICM".utf8) ? nil : Self.problem
    }

    /// At the end of the stream: a problem if fewer than 132 bytes arrived.
    func finish() -> String? {
        done ? nil : Self.problem
    }

    private static let problem = "not a DICOM Part 10 file: no 'DICM' marker at byte offset 128"
}
