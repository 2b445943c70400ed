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
/// durable jobs (`Submit` and the job RPCs), and reports its load to the gateway. It is assembled from named parts:
///
/// - ``RunPreparation`` reads and checks a request: the header, the destinations, the inputs (stored images
///   resolved through the registry for the caller, inline images spooled to this instance's input store, one at
///   a time), and the caller's budget.
/// - ``RunExecutor`` runs a prepared run on a worker through the engine (`Engine/`: operation plans, source
///   decoding and result building, free of gRPC), registers results for the caller with their provenance, shares
///   them with the destinations, and writes the usage event (before the run is reported done) and the notice.
/// - ``ShardCoordinator`` splits a batch of stored images across the serving instances and merges the parts; it
///   also serves the shards other instances send here.
/// - ``JobService`` keeps jobs in this instance's database; a job interrupted by a restart resumes from its
///   recorded results, and one that cannot resume is failed with the reason. ``JobScheduler`` runs them.
/// - ``ResultStream`` writes results to a caller: `Run`, `RunShard` and `GetJobResult` share its shape.
public struct ProcessingService: Sendable {
    let configuration: ProcessingConfiguration
    /// The job store: jobs, their results, and the notices owed.
    let store: JobStore
    /// The other processing instances (and this one), for splitting batches; `nil` when none are configured.
    let peers: ProcessingPool?
    let workers: WorkerPool
    let load: LoadCounter
    /// The instance's load now: what `GetLoad` answers and what the coordinator weighs this instance's share by.
    let loadReport: @Sendable () async -> Atrium_V1_LoadReport
    let audit: AuditTrail
    let logger: Logger
    /// The usage and notice outbox pumps.
    let pumps: [OutboxPump]
    /// The clock for expiry, grants and timestamps; injected so that tests can move it.
    let now: @Sendable () -> Date

    /// The named parts: preparation reads and checks a request, the executor runs it, the coordinator splits a
    /// batch across instances, the job service keeps jobs, and the result stream writes results to a caller.
    let preparation: RunPreparation
    let executor: RunExecutor
    let coordinator: ShardCoordinator
    let jobs: JobService
    let resultStream: ResultStream

    /// Sends the notice outbox; woken when a notice is written.
    var noticePump: OutboxPump { pumps[1] }

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
        self.logger = logger
        let registryClient = registry.registryInternal
        let securityClient = security.securityInternal
        let deliveryClient = delivery.deliveryInternal
        try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true)
        let blobs = try BlobStore(root: configuration.blobDirectory, readOnly: true)
        let inputs = try BlobStore(root: configuration.inputDirectory)
        let results = try BlobStore(root: configuration.resultDirectory)
        // Earlier versions spooled split batches' results here; nothing is spooled now.
        try? FileManager.default.removeItem(atPath: "\(configuration.stateDirectory)/spool")
        _ = try inputs.removeStaleTemporaries()
        _ = try results.removeStaleTemporaries()
        let store = try JobStore(path: configuration.databasePath)
        self.store = store
        let usage = try UsageOutbox(path: configuration.usageOutboxPath)
        let workers = WorkerPool(size: configuration.workers, queueLimit: configuration.queueLimit)
        self.workers = workers
        let throughput = ThroughputMeter()
        self.audit = AuditTrail(security: securityClient, logger: logger)
        let usageSender = UsageSender(outbox: usage, security: securityClient, logger: logger)
        let noticeSender = InboxNoticeSender(delivery: deliveryClient, logger: logger) { limit in
            try await store.pendingNotices(limit: limit).map { OwedNotice(sequence: $0.sequence, recipients: $0.recipients, entryKey: $0.entryKey, entry: $0.entry) }
        } remove: { sequence in
            try await store.removeNotice(sequence)
        }
        let usagePump = OutboxPump(interval: .seconds(5), batchDelay: .milliseconds(250)) { await usageSender.deliver() }
        let noticePump = OutboxPump(interval: .seconds(5)) { await noticeSender.deliver() }
        // Woken when a row is written; the interval only retries what a failure (or an earlier process) left.
        self.pumps = [usagePump, noticePump]

        self.preparation = RunPreparation(
            registry: registryClient, security: securityClient, blobs: blobs, inputs: inputs, store: store,
            budget: BudgetGate(security: securityClient, logger: logger), throughput: throughput, logger: logger
        )
        self.executor = RunExecutor(
            softwareVersion: configuration.softwareVersion, blobs: blobs, inputs: inputs, registry: registryClient,
            throughput: throughput, audit: audit, usage: usage, usagePump: usagePump, logger: logger, now: now
        )
        self.resultStream = ResultStream(blobs: blobs, instanceID: configuration.instanceID, softwareVersion: configuration.softwareVersion)
        let load = LoadCounter()
        self.load = load
        let report: @Sendable () async -> Atrium_V1_LoadReport = {
            let queued = (try? await store.queue().count) ?? 0
            return .with {
                $0.instanceID = configuration.instanceID
                $0.queueLength = UInt32(clamping: workers.waiting + queued)
                $0.inFlight = UInt32(clamping: workers.busy)
                $0.throughputMegapixelsPerSecond = throughput.megapixelsPerSecond
                $0.workerCount = UInt32(clamping: workers.size)
                $0.softwareVersion = configuration.softwareVersion
                $0.callsServed = UInt64(load.total)
                $0.measuredAt = .init(date: now())
            }
        }
        self.loadReport = report
        self.coordinator = ShardCoordinator(
            instanceID: configuration.instanceID, peers: peers, workers: workers, preparation: preparation,
            executor: executor, stream: resultStream, loadReport: report, logger: logger
        )
        self.jobs = JobService(
            instanceID: configuration.instanceID, store: store, results: results, inputs: inputs,
            resultRetention: configuration.resultRetention, workers: workers, throughput: throughput, preparation: preparation, executor: executor, coordinator: coordinator, stream: resultStream,
            noticePump: noticePump, logger: logger, now: now
        )
    }

    /// What the process must run besides the server: the job scheduler, the outboxes and the audit trail.
    public var background: [any Service] {
        [JobScheduler(jobs: jobs)] + pumps.map { $0 as any Service } + [audit] + (peers.map { [$0 as any Service] } ?? [])
    }

    /// Every RPC service the processing process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [PublicProcessing(service: self), LoadReporter(service: self)]
    }

    /// Counts calls to the public processing service.
    public var interceptors: [ConditionalInterceptor<any ServerInterceptor>] {
        [.apply(load, to: .services([Atrium_V1_Processing.descriptor]))]
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
                try await service.coordinator.serveShard(message, writer: writer)
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
