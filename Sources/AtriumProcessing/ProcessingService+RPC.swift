import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import Crypto
import Foundation
import GRPCCore
import Synchronization
import AtriumBackend
import AtriumPool

/// `atrium.v1.Processing`, reached only through the gateway.
struct PublicProcessing: Atrium_V1_Processing.ServiceProtocol {
    let service: ProcessingService

    func run(
        request: StreamingServerRequest<Atrium_V1_RunRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_RunResponse> {
        let caller = try VerifiedCaller.current()
        let run = try await service.preparation.prepare(request, caller: caller, forJob: false)
        return StreamingServerResponse { writer in
            do {
                try await service.stream(run, to: writer)
            } catch {
                await service.preparation.discardSpooled(run.inputs)
                throw error
            }
            await service.preparation.discardSpooled(run.inputs)
            return [:]
        }
    }

    func submit(
        request: StreamingServerRequest<Atrium_V1_RunRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        let run = try await service.preparation.prepare(request, caller: caller, forJob: true)
        return ServerResponse(message: try await service.jobs.submit(run))
    }

    func getJob(request: ServerRequest<Atrium_V1_GetJobRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        let job = try await service.jobs.ownJob(request.message.jobID, caller: caller)
        return ServerResponse(message: try await service.jobs.message(for: job))
    }

    func getJobResult(
        request: ServerRequest<Atrium_V1_GetJobResultRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_RunResponse> {
        let caller = try VerifiedCaller.current()
        let (job, results) = try await service.jobs.finishedJob(request.message, caller: caller)
        let chunkSize = request.message.chunkSize == 0 ? 256 << 10 : Int(request.message.chunkSize)
        return StreamingServerResponse { writer in
            try await service.jobs.streamResults(of: job, results: results, from: Int(request.message.fromResult), chunkSize: chunkSize, to: writer)
            return [:]
        }
    }

    func cancel(request: ServerRequest<Atrium_V1_CancelJobRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.jobs.cancel(request.message, caller: caller))
    }

    func listJobs(request: ServerRequest<Atrium_V1_ListJobsRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListJobsResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.jobs.listJobs(request.message, caller: caller))
    }
}

extension ProcessingService {
    /// Runs `run` on a worker and streams it: header, each result as it is made, summary. Results to register
    /// are registered before their bytes are sent; the destinations' inbox entry and the usage event are
    /// written before the summary.
    func stream(_ run: PreparedRun, to writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        let started = ContinuousClock.now
        let shards = try await coordinator.shardPlan(for: run)
        var header = resultStream.header(run, jobID: "", resultCount: run.resultCount)
        if let shards { header.instanceIds = shards.map { $0.instance?.instanceID ?? configuration.instanceID } }
        try await writer.write(.with { $0.header = header })
        let collected = Shared([Atrium_V1_ImageRef]())
        let emit: @Sendable (Produced) async throws -> Void = { produced in
            if !produced.imageID.isEmpty {
                // The registry's digest of the stored bytes (registered results always carry it).
                collected.value.withLock { $0.append(.with { $0.imageID = produced.imageID; $0.sha256 = produced.sha256 }) }
            }
            try await resultStream.write(produced, to: writer)
        }
        let totals: RunTotals
        if let shards {
            // Each shard's usage is recorded where it ran.
            totals = try await coordinator.executeSplit(run, shards: shards, holdsWorker: false, shouldStop: { false }, progress: { _ in }, emit: emit).totals
        } else {
            totals = try await workers.withWorker { try await executor.execute(run, emit: emit) }
            try executor.meter(run, images: run.inputs.count, totals: totals)
        }
        let refs = collected.value.withLock { $0 }
        if !run.destinations.isEmpty {
            try await store.addNotice(executor.notice(for: run, imageRefs: refs, jobID: "", recipients: run.destinations))
            noticePump.wake()
        }
        try await writer.write(
            .with {
                $0.summary = .with {
                    $0.cpuSeconds = totals.cpuSeconds
                    $0.wallTime = .init(rounding: started.duration(to: .now))
                    $0.megapixels = totals.megapixels
                    $0.resultImageIds = refs.map(\.imageID)
                }
            }
        )
    }
}
