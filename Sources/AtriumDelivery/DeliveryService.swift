import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
public import AtriumStorage
import Crypto
import Foundation
import Synchronization
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle

/// Delivery: streams images to receivers.
///
/// This version delivers the stored bytes (`ENCODING_ORIGINAL`): the registry resolves each image for the
/// caller (visibility, record), then the bytes are read straight from the immutable blob store, read-only, so
/// they never pass through the registry process. Resume offsets and an end-to-end SHA-256 check apply. A fetch
/// is checked against the caller's budget cap first; each delivered image is metered (one delivery, its bytes)
/// and each image asked for leaves an audit entry. Transcoding, printing and the inbox arrive with the rest of
/// the delivery issue (#5).
public struct DeliveryService: Sendable {
    private let registry: Atrium_V1_RegistryInternal.Client<HTTP2ClientTransport.Posix>
    private let blobs: BlobStore
    private let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
    private let meter: UsageMeter
    private let audit: AuditTrail
    /// Subscribers known to have no budget cap, until when.
    private let uncapped = UncappedSubscribers()
    private let logger: Logger

    /// A delivery service that resolves images through `registry`, reads their bytes from `blobs` (the
    /// registry's store, opened read-only) and meters through `security` (clients presenting delivery's
    /// certificate).
    public init(
        registry: GRPCClient<HTTP2ClientTransport.Posix>,
        security: GRPCClient<HTTP2ClientTransport.Posix>,
        blobs: BlobStore,
        logger: Logger
    ) {
        self.registry = Atrium_V1_RegistryInternal.Client(wrapping: registry)
        self.blobs = blobs
        self.security = Atrium_V1_SecurityInternal.Client(wrapping: security)
        self.meter = UsageMeter(security: security, logger: logger)
        self.audit = AuditTrail(security: security, logger: logger)
        self.logger = logger
    }

    /// What the process must run besides the server: the usage meter and the audit trail.
    public var background: [any Service] { [meter, audit] }

    /// Refuses a fetch that would take the caller past its budget cap (RESOURCE_EXHAUSTED). A subscriber whose
    /// contract has no cap is not asked again for 5 s (the same window as the gateway's authorization cache).
    func checkBudget(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller) async throws {
        let now = ContinuousClock.now
        if let until = uncapped.entries.withLock({ $0[caller.subscriberID] }), until > now { return }
        do {
            let quote = try await security.checkBudget(
                .with {
                    $0.subscriberID = caller.subscriberID
                    $0.request = .with { $0.delivery = .with { $0.imageCount = UInt32(request.imageIds.count) } }
                },
                options: .internalCall
            )
            if !quote.budgetCapped {
                uncapped.entries.withLock { entries in
                    if entries.count > 10_000 { entries.removeAll() }
                    entries[caller.subscriberID] = now + .seconds(5)
                }
            }
        } catch let error as RPCError where error.code == .resourceExhausted {
            throw RPCError(code: .resourceExhausted, message: error.message)
        } catch {
            logger.error("cannot check the budget", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw RPCError(code: .unavailable, message: "the budget cannot be checked right now; try again")
        }
    }

    /// Meters and audits one image delivered (or refused, with `outcome`).
    private func account(_ imageID: String, record: Atrium_V1_ImageRecord?, caller: VerifiedCaller, outcome: String) {
        audit.enqueue(
            .with {
                $0.time = .init(date: Date())
                $0.subscriberID = caller.subscriberID
                $0.method = Atrium_V1_Delivery.Method.Fetch.descriptor.fullyQualifiedMethod
                $0.resourceID = imageID
                $0.resourceOwnerID = record?.registrantID ?? ""
                $0.patientID = record?.patientID ?? ""
                $0.outcome = outcome
                $0.requestID = caller.requestID
            }
        )
        guard let record, outcome == "ok" else { return }
        meter.enqueue(
            .with {
                $0.eventID = "delivery:\(caller.requestID):\(imageID)"
                $0.subscriberID = caller.subscriberID
                $0.time = .init(date: Date())
                $0.delivery = .with {
                    $0.imageID = imageID
                    $0.bytes = record.digest.sizeBytes
                }
            }
        )
    }

    /// Every RPC service the delivery process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [
            PublicDelivery(service: self),
            UnimplementedService(methods: Atrium_V1_DeliveryInternal.Method.descriptors, subject: "the delivery issue (#5)"),
        ]
    }

    /// Validates a fetch request.
    func validate(_ request: Atrium_V1_FetchRequest) throws {
        guard !request.imageIds.isEmpty else { throw DeliveryError.invalidArgument("image_ids is empty") }
        guard request.imageIds.count <= 1000 else { throw DeliveryError.invalidArgument("at most 1000 image_ids per call") }
        guard request.chunkSize == 0 || (64 << 10)...(1 << 20) ~= Int(request.chunkSize) else {
            throw DeliveryError.invalidArgument("chunk_size must be 0 or 65536 to 1048576 bytes")
        }
        switch request.encoding {
        case .unspecified, .original: break
        case .explicitLe, .jpegLs, .deflate:
            throw DeliveryError.unimplemented("transfer encodings other than ENCODING_ORIGINAL arrive with the delivery issue (#5)")
        case .UNRECOGNIZED(let value):
            throw DeliveryError.invalidArgument("unknown encoding \(value)")
        }
        if !request.printJobID.isEmpty {
            throw DeliveryError.unimplemented("print-job fetches arrive with the delivery issue (#5)")
        }
    }

    /// Streams each image of `request` to `writer`: begin, chunks, end; or one `refused` item.
    func fetch(_ request: Atrium_V1_FetchRequest, caller: VerifiedCaller, writer: RPCWriter<Atrium_V1_FetchResponse>) async throws {
        let chunkSize = request.chunkSize == 0 ? 1 << 20 : Int(request.chunkSize)
        for imageID in request.imageIds {
            let offset = request.resumeOffsets[imageID] ?? 0
            let record: Atrium_V1_ImageRecord
            do {
                record = try await registry.resolveImage(.with { $0.caller = caller.message; $0.imageID = imageID })
            } catch let error as RPCError where error.code == .notFound {
                account(imageID, record: nil, caller: caller, outcome: error.code.statusName)
                try await writer.write(.with {
                    $0.refused = .with {
                        $0.id = imageID
                        $0.code = Int32(Status.Code.notFound.rawValue)
                        $0.message = error.message
                    }
                })
                continue
            } catch let error as RPCError {
                // The registry's status passes on, without the registry's response headers.
                throw error.withoutTransportHeaders
            }
            try await send(record, from: offset, chunkSize: chunkSize, to: writer)
            account(imageID, record: record, caller: caller, outcome: "ok")
        }
    }

    /// Streams one resolved image's stored bytes from `offset`: begin, chunks, end. From offset 0 the bytes
    /// are hashed on the way and checked against the record before `end` is sent.
    private func send(_ record: Atrium_V1_ImageRecord, from offset: UInt64, chunkSize: Int, to writer: RPCWriter<Atrium_V1_FetchResponse>) async throws {
        let imageID = record.imageID
        let size = record.digest.sizeBytes
        guard offset <= size else {
            throw DeliveryError.invalidArgument("resume offset \(offset) is past the end of image '\(imageID)' (\(size) bytes)")
        }
        let reader: BlobReader
        do {
            reader = try blobs.openReader(record.digest.sha256)
        } catch {
            logger.error("cannot open a blob", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(imageID)"])
            throw DeliveryError.dataLoss(imageID)
        }
        guard reader.size == size else {
            logger.error("a blob's size does not match its record", metadata: [LogKey.imageID: "\(imageID)"])
            throw DeliveryError.dataLoss(imageID)
        }
        try await writer.write(.with {
            $0.begin = .with {
                $0.imageID = imageID
                $0.transferSyntaxUid = record.transferSyntaxUid
                $0.encoding = .original
                $0.sizeBytes = size
                $0.startOffset = offset
            }
        })
        var hasher = SHA256()
        var next = offset
        while next < size {
            let data: Data
            do {
                data = try reader.read(offset: next, length: chunkSize)
            } catch {
                logger.error("cannot read a blob", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(imageID)"])
                throw DeliveryError.dataLoss(imageID)
            }
            if offset == 0 { hasher.update(data: data) }
            try await writer.write(.with { $0.chunk = .with { $0.imageID = imageID; $0.offset = next; $0.data = data } })
            next += UInt64(data.count)
        }
        if offset == 0 {
            guard Hex.encode(hasher.finalize()) == record.digest.sha256 else {
                logger.error("stored bytes do not match their digest", metadata: [LogKey.imageID: "\(imageID)"])
                throw DeliveryError.dataLoss(imageID)
            }
        }
        try await writer.write(.with { $0.end = .with { $0.imageID = imageID; $0.digest = record.digest } })
    }
}

/// Errors of delivery, each mapped to the status the caller sees.
public struct DeliveryError: Error, Sendable, Equatable, RPCErrorConvertible {
    private enum Code: Sendable, Equatable {
        case invalidArgument
        case unimplemented
        case dataLoss
    }

    private let code: Code
    private let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    static func unimplemented(_ message: String) -> Self { Self(.unimplemented, message) }
    static func dataLoss(_ imageID: String) -> Self { Self(.dataLoss, "the stored bytes of image '\(imageID)' are damaged") }

    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .unimplemented: .unimplemented
        case .dataLoss: .dataLoss
        }
    }

    public var rpcErrorMessage: String { message }
}

/// Subscribers known to have no budget cap, each until when.
final class UncappedSubscribers: Sendable {
    let entries = Mutex<[String: ContinuousClock.Instant]>([:])
}
