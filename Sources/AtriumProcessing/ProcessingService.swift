import SwiftProtobuf
import AtriumAPI
import AtriumCore
public import AtriumRuntime
import AtriumStorage
public import Foundation
public import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
public import Logging
public import ServiceLifecycle
import Synchronization
import AtriumBackend
public import AtriumPool

/// One processing instance: runs filters and projections (ARCHITECTURE.md §6) synchronously (`Run`) or as
/// durable jobs (`Submit` and the job RPCs), and reports its load to the gateway.
///
/// - **Inputs.** Stored images are resolved through the registry for the caller (visibility), then read straight
///   from the registry's immutable blob store, read-only. Inline images are spooled to this instance's input
///   store first, so memory holds one input at a time.
/// - **Results** are derived Secondary Capture objects (``ResultBuilder``). Results of stored inputs, and of any
///   run with destinations, are registered for the caller with their provenance and shared with the
///   destinations; each destination's inbox then gets one entry, sent through an outbox.
/// - **Jobs** (`ProcessingService+Jobs.swift`) live in this instance's database; a job interrupted by a restart
///   resumes from its recorded results, and one that cannot resume is failed with the reason.
/// - **Usage**: one processing event per run or job (images, input bytes, CPU seconds, operation), written to
///   the usage outbox before the run is reported done.
public struct ProcessingService: Sendable {
    let configuration: ProcessingConfiguration
    let registry: any Atrium_V1_RegistryInternal.ClientProtocol
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    let delivery: any Atrium_V1_DeliveryInternal.ClientProtocol
    let blobs: BlobStore
    let inputs: BlobStore
    let results: BlobStore
    let store: JobStore
    let usage: UsageOutbox
    /// The other processing instances (and this one), for splitting batches; `nil` when none are configured.
    let peers: ProcessingPool?
    let workers: WorkerPool
    let throughput = ThroughputMeter()
    let load = LoadCounter()
    let audit: AuditTrail
    let budget: BudgetGate
    let logger: Logger
    /// The usage and notice outbox pumps.
    let pumps: [OutboxPump]
    /// Rung when a job is queued: the scheduler waits on it instead of polling the job store.
    let jobQueued = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    /// Sends the usage outbox; woken when an event is written.
    var usagePump: OutboxPump { pumps[0] }
    /// Sends the notice outbox; woken when a notice is written.
    var noticePump: OutboxPump { pumps[1] }

    /// The clock for expiry, grants and timestamps; injected so that tests can move it.
    let now: @Sendable () -> Date

    /// An instance that resolves and registers images through `registry`, meters through `security`, puts
    /// results in inboxes through `delivery` (clients presenting processing's certificate) and splits batches
    /// across `peers`.
    public init(
        configuration: ProcessingConfiguration,
        registry: Connection,
        security: Connection,
        delivery: Connection,
        peers: ProcessingPool? = nil,
        logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.now = now
        self.peers = peers
        self.configuration = configuration
        self.registry = registry.registryInternal
        self.security = security.securityInternal
        self.delivery = delivery.deliveryInternal
        try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
        self.blobs = try BlobStore(root: configuration.blobDirectory, readOnly: true)
        self.inputs = try BlobStore(root: configuration.inputDirectory)
        self.results = try BlobStore(root: configuration.resultDirectory)
        // Earlier versions spooled split batches' results here; nothing is spooled now.
        try? FileManager.default.removeItem(atPath: "\(configuration.stateDirectory)/spool")
        _ = try inputs.removeStaleTemporaries()
        _ = try results.removeStaleTemporaries()
        self.store = try JobStore(path: configuration.databasePath)
        self.usage = try UsageOutbox(path: configuration.usageOutboxPath)
        self.workers = WorkerPool(size: configuration.workers, queueLimit: configuration.queueLimit)
        self.audit = AuditTrail(security: self.security, logger: logger)
        self.budget = BudgetGate(security: self.security, logger: logger)
        self.logger = logger
        let usageSender = UsageSender(outbox: usage, security: self.security, logger: logger)
        let store = self.store
        let noticeSender = InboxNoticeSender(delivery: self.delivery, logger: logger) { limit in
            try await store.pendingNotices(limit: limit).map { OwedNotice(sequence: $0.sequence, recipients: $0.recipients, entryKey: $0.entryKey, entry: $0.entry) }
        } remove: { sequence in
            try await store.removeNotice(sequence)
        }
        self.pumps = [
            // Woken when a row is written; the interval only retries what a failure (or an earlier process) left.
            OutboxPump(interval: .seconds(5), batchDelay: .milliseconds(250)) { await usageSender.deliver() },
            OutboxPump(interval: .seconds(5)) { await noticeSender.deliver() },
        ]
    }

    /// What the process must run besides the server: the job scheduler, the outboxes and the audit trail.
    public var background: [any Service] {
        [JobScheduler(service: self)] + pumps.map { $0 as any Service } + [audit] + (peers.map { [$0 as any Service] } ?? [])
    }

    /// Every RPC service the processing process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [PublicProcessing(service: self), LoadReporter(service: self)]
    }

    /// Counts calls to the public processing service.
    public var interceptors: [ConditionalInterceptor<any ServerInterceptor>] {
        [.apply(load, to: .services([Atrium_V1_Processing.descriptor]))]
    }

    var instanceID: String { configuration.instanceID }

    /// The instance's load now.
    func loadReport() async -> Atrium_V1_LoadReport {
        let queued = (try? await store.queue().count) ?? 0
        return .with {
            $0.instanceID = instanceID
            $0.queueLength = UInt32(clamping: workers.waiting + queued)
            $0.inFlight = UInt32(clamping: workers.busy)
            $0.throughputMegapixelsPerSecond = throughput.megapixelsPerSecond
            $0.workerCount = UInt32(clamping: workers.size)
            $0.softwareVersion = configuration.softwareVersion
            $0.callsServed = UInt64(load.total)
            $0.measuredAt = .init(date: now())
        }
    }

    /// Writes an audit entry for an access to patient data.
    func record(_ caller: VerifiedCaller, _ method: MethodDescriptor, resource: String, owner: String = "", patientID: String = "", outcome: String = "ok") {
        audit.record(method, caller: caller, resource: resource, owner: owner, patientID: patientID, outcome: outcome, at: now())
    }
}

/// Counts calls to the public processing service (`LoadReport.calls_served`); what is in flight is the worker pool's.
final class LoadCounter: ServerInterceptor, Sendable {
    private let served = Atomic<Int>(0)

    var total: Int { served.load(ordering: .relaxed) }

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        served.add(1, ordering: .relaxed)
        return try await next(request, context)
    }
}

/// `ProcessingInternal`: `GetLoad` (the gateway and peers) and `RunShard` (peers only).
struct LoadReporter: RegistrableRPCService {
    let service: ProcessingService

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: Atrium_V1_ProcessingInternal.Method.RunShard.descriptor,
            deserializer: ProtobufDeserializer<Atrium_V1_ShardRequest>(),
            serializer: ProtobufSerializer<Atrium_V1_RunResponse>()
        ) { request, context in
            guard PeerIdentity.service(of: context) == .processing else {
                throw ProcessingError.permissionDenied("only processing instances run shards")
            }
            var messages = request.messages.makeAsyncIterator()
            guard let message = try await messages.next() else { throw ProcessingError.invalidArgument("RunShard needs its request") }
            return StreamingServerResponse { writer in
                try await service.serveShard(message, writer: writer)
                return [:]
            }
        }
        router.registerHandler(
            forMethod: Atrium_V1_ProcessingInternal.Method.GetLoad.descriptor,
            deserializer: ProtobufDeserializer<Atrium_V1_GetLoadRequest>(),
            serializer: ProtobufSerializer<Atrium_V1_LoadReport>()
        ) { request, context in
            for try await _ in request.messages {}
            return StreamingServerResponse(single: ServerResponse(message: await service.loadReport()))
        }
    }
}
