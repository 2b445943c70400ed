import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Crypto
import Foundation
import Synchronization
public import GRPCCore
public import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle

/// Delivery: streams images to receivers.
///
/// This first version delivers the stored bytes (`ENCODING_ORIGINAL`) read through the registry's internal
/// read stream, with per-image visibility, resume offsets and an end-to-end SHA-256 check. A fetch is
/// checked against the caller's budget cap first; each delivered image is metered (one delivery, its bytes)
/// and each image asked for leaves an audit entry. Transcoding, direct blob-store reads, printing and the
/// inbox arrive with the delivery issue (#5).
public struct DeliveryService: Sendable {
    private let registry: Atrium_V1_RegistryInternal.Client<HTTP2ClientTransport.Posix>
    private let security: Atrium_V1_SecurityInternal.Client<HTTP2ClientTransport.Posix>
    private let meter: UsageMeter
    private let audit: AuditTrail
    /// Subscribers known to have no budget cap, until when.
    private let uncapped = UncappedSubscribers()
    private let logger: Logger

    /// A delivery service that reads through `registry` and meters through `security` (clients presenting
    /// delivery's certificate).
    public init(registry: GRPCClient<HTTP2ClientTransport.Posix>, security: GRPCClient<HTTP2ClientTransport.Posix>, logger: Logger) {
        self.registry = Atrium_V1_RegistryInternal.Client(wrapping: registry)
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
        for imageID in request.imageIds {
            let offset = request.resumeOffsets[imageID] ?? 0
            let read = Atrium_V1_ReadImageRequest.with {
                $0.caller = caller.message
                $0.imageID = imageID
                $0.offset = offset
                $0.chunkSize = request.chunkSize
            }
            do {
                let record = try await registry.readImage(read) { response in
                    try await relay(response.messages, imageID: imageID, startOffset: offset, writer: writer)
                }
                account(imageID, record: record, caller: caller, outcome: "ok")
            } catch let error as RPCError where error.code == .notFound {
                account(imageID, record: nil, caller: caller, outcome: error.code.statusName)
                try await writer.write(.with {
                    $0.refused = .with {
                        $0.id = imageID
                        $0.code = Int32(Status.Code.notFound.rawValue)
                        $0.message = error.message
                    }
                })
            } catch let error as RPCError {
                // The registry's status passes on, without the registry's response headers.
                throw error.withoutTransportHeaders
            }
        }
    }

    private func relay(
        _ parts: RPCAsyncSequence<Atrium_V1_ReadImageResponse, any Error>,
        imageID: String,
        startOffset: UInt64,
        writer: RPCWriter<Atrium_V1_FetchResponse>
    ) async throws -> Atrium_V1_ImageRecord {
        var record: Atrium_V1_ImageRecord?
        var hasher = SHA256()
        var next = startOffset
        for try await part in parts {
            switch part.part {
            case .record(let value):
                record = value
                try await writer.write(.with {
                    $0.begin = .with {
                        $0.imageID = imageID
                        $0.transferSyntaxUid = value.transferSyntaxUid
                        $0.encoding = .original
                        $0.sizeBytes = value.digest.sizeBytes
                        $0.startOffset = startOffset
                    }
                })
            case .chunk(let chunk):
                guard record != nil, chunk.offset == next else { throw DeliveryError.upstreamBroken(imageID) }
                if startOffset == 0 { hasher.update(data: chunk.data) }
                next += UInt64(chunk.data.count)
                try await writer.write(.with {
                    $0.chunk = .with {
                        $0.imageID = imageID
                        $0.offset = chunk.offset
                        $0.data = chunk.data
                    }
                })
            case nil:
                throw DeliveryError.upstreamBroken(imageID)
            }
        }
        guard let record, next == record.digest.sizeBytes else { throw DeliveryError.upstreamBroken(imageID) }
        if startOffset == 0 {
            let digest = Hex.encode(hasher.finalize())
            guard digest == record.digest.sha256 else {
                logger.error("stored bytes do not match their digest", metadata: [LogKey.imageID: "\(imageID)"])
                throw DeliveryError.dataLoss(imageID)
            }
        }
        try await writer.write(.with {
            $0.end = .with {
                $0.imageID = imageID
                $0.digest = record.digest
            }
        })
        return record
    }
}

/// Errors of delivery, each mapped to the status the caller sees.
public struct DeliveryError: Error, Sendable, Equatable, RPCErrorConvertible {
    private enum Code: Sendable, Equatable {
        case invalidArgument
        case unimplemented
        case unavailable
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
    static func upstreamBroken(_ imageID: String) -> Self { Self(.unavailable, "the read of image '\(imageID)' was interrupted; fetch again with a resume offset") }
    static func dataLoss(_ imageID: String) -> Self { Self(.dataLoss, "the stored bytes of image '\(imageID)' are damaged") }

    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .unimplemented: .unimplemented
        case .unavailable: .unavailable
        case .dataLoss: .dataLoss
        }
    }

    public var rpcErrorMessage: String { message }
}

/// Subscribers known to have no budget cap, each until when.
final class UncappedSubscribers: Sendable {
    let entries = Mutex<[String: ContinuousClock.Instant]>([:])
}
