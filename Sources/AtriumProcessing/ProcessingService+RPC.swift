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
        let run = try await service.prepare(request, caller: caller, forJob: false)
        return StreamingServerResponse { writer in
            do {
                try await service.stream(run, to: writer)
            } catch {
                await service.discardSpooled(run.inputs)
                throw error
            }
            await service.discardSpooled(run.inputs)
            return [:]
        }
    }

    func submit(
        request: StreamingServerRequest<Atrium_V1_RunRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        let run = try await service.prepare(request, caller: caller, forJob: true)
        return ServerResponse(message: try await service.submit(run))
    }

    func getJob(request: ServerRequest<Atrium_V1_GetJobRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        let job = try await service.ownJob(request.message.jobID, caller: caller)
        return ServerResponse(message: try await service.message(for: job))
    }

    func getJobResult(
        request: ServerRequest<Atrium_V1_GetJobResultRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Atrium_V1_RunResponse> {
        let caller = try VerifiedCaller.current()
        let (job, results) = try await service.finishedJob(request.message, caller: caller)
        let chunkSize = request.message.chunkSize == 0 ? 256 << 10 : Int(request.message.chunkSize)
        return StreamingServerResponse { writer in
            try await service.streamResults(of: job, results: results, from: Int(request.message.fromResult), chunkSize: chunkSize, to: writer)
            return [:]
        }
    }

    func cancel(request: ServerRequest<Atrium_V1_CancelJobRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ProcessingJob> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.cancel(request.message, caller: caller))
    }

    func listJobs(request: ServerRequest<Atrium_V1_ListJobsRequest>, context: ServerContext) async throws -> ServerResponse<Atrium_V1_ListJobsResponse> {
        let caller = try VerifiedCaller.current()
        return ServerResponse(message: try await service.listJobs(request.message, caller: caller))
    }
}

extension ProcessingService {
    /// Reads and checks a Run or Submit request up to its last input: the header, the destinations, the inputs
    /// (stored ones resolved for the caller, inline ones spooled), and the caller's budget.
    func prepare(_ request: StreamingServerRequest<Atrium_V1_RunRequest>, caller: VerifiedCaller, forJob: Bool) async throws -> PreparedRun {
        var messages = request.messages.makeAsyncIterator()
        guard let first = try await messages.next(), case .header(let header)? = first.part else {
            throw ProcessingError.invalidArgument("the first message must be a RunRequest with header")
        }
        let plan = try validate(header, caller: caller, forJob: forJob)
        let destinations = try await checkDestinations(header.destinationIds, caller: caller)
        let inputs: [RunInput]
        if case .inlineImageCount(let count) = header.inputs {
            inputs = try await spoolInline(count: Int(count), from: &messages)
        } else {
            if try await messages.next() != nil {
                throw ProcessingError.invalidArgument("only inline inputs follow the header; this request names stored images")
            }
            inputs = try await resolveStored(header, plan: plan, caller: caller)
        }
        do {
            try await checkBudget(inputs, caller: caller)
        } catch {
            await discardSpooled(inputs)
            throw error
        }
        let stored = inputs.contains { $0.imageID != nil }
        return PreparedRun(
            caller: caller,
            header: header,
            plan: plan,
            destinations: destinations,
            inputs: inputs,
            register: stored || !destinations.isEmpty,
            key: caller.requestID.isEmpty ? Identifier.make(prefix: "run") : caller.requestID,
            method: forJob ? Atrium_V1_Processing.Method.Submit.descriptor : Atrium_V1_Processing.Method.Run.descriptor
        )
    }

    /// The header of a result stream.
    func resultHeader(_ run: PreparedRun, jobID: String, resultCount: Int) -> Atrium_V1_RunResultHeader {
        .with {
            $0.operation = run.plan.applied
            $0.outputType = run.plan.outputType
            $0.inputImageIds = run.inputImageIDs
            $0.inputCount = UInt32(run.inputs.count)
            $0.instanceIds = [instanceID]
            $0.softwareVersion = configuration.softwareVersion
            $0.resultCount = UInt32(resultCount)
            $0.jobID = jobID
        }
    }

    /// Runs `run` on a worker and streams it: header, each result as it is made, summary. Results to register
    /// are registered before their bytes are sent; the destinations' inbox entry and the usage event are
    /// written before the summary.
    func stream(_ run: PreparedRun, to writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        let started = ContinuousClock.now
        let shards = try await shardPlan(for: run)
        var header = resultHeader(run, jobID: "", resultCount: run.resultCount)
        if let shards { header.instanceIds = shards.map { $0.instance?.instanceID ?? instanceID } }
        try await writer.write(.with { $0.header = header })
        let collected = Shared([Atrium_V1_ImageRef]())
        let emit: @Sendable (Produced) async throws -> Void = { produced in
            if !produced.imageID.isEmpty {
                // The registry's digest of the stored bytes (registered results always carry it).
                collected.value.withLock { $0.append(.with { $0.imageID = produced.imageID; $0.sha256 = produced.sha256 }) }
            }
            try await self.write(produced, to: writer)
        }
        let totals: RunTotals
        if let shards {
            // Each shard's usage is recorded where it ran.
            totals = try await executeSplit(run, shards: shards, holdsWorker: false, shouldStop: { false }, progress: { _ in }, emit: emit).totals
        } else {
            totals = try await workers.withWorker { try await execute(run, emit: emit) }
            try meter(run, images: run.inputs.count, totals: totals)
        }
        let refs = collected.value.withLock { $0 }
        if !run.destinations.isEmpty {
            try await store.addNotice(notice(for: run, imageRefs: refs, jobID: "", recipients: run.destinations))
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

    /// One result: its `ResultImage`, its bytes in chunks, and its digest. A registered result's digest is the one
    /// the registry stored it under (not computed again); a result carried by reference is read from the blob
    /// store, unless `bytes` is false (a shard answering a coordinator that reads them there itself).
    func write(_ produced: Produced, bytes: Bool = true, chunkSize: Int = 1 << 20, to writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        try await writer.write(
            .with {
                $0.result = .with {
                    $0.index = UInt32(produced.index)
                    $0.inputIndices = produced.inputIndices.map { UInt32($0) }
                    $0.sizeBytes = UInt64(produced.size)
                    $0.imageID = produced.imageID
                    $0.rows = UInt32(produced.built.rows)
                    $0.columns = UInt32(produced.built.columns)
                    $0.bitsAllocated = UInt32(produced.built.bitsAllocated)
                    $0.projectionPartial = produced.partial
                }
            }
        )
        if bytes {
            if produced.referencedSize != nil {
                let reader: BlobReader
                do {
                    reader = try blobs.openReader(produced.sha256)
                } catch {
                    throw ProcessingError.dataLoss("result \(produced.index) ('\(produced.imageID)') cannot be read from the blob store (\(error))")
                }
                guard reader.size == UInt64(produced.size) else {
                    throw ProcessingError.dataLoss("result \(produced.index) ('\(produced.imageID)') has \(reader.size) bytes in the blob store; its shard said \(produced.size)")
                }
                try await Self.writeChunks(of: reader, chunkSize: chunkSize, to: writer)
            } else {
                let bytes = produced.built.bytes
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + chunkSize, bytes.count)
                    try await writer.write(.with { $0.chunk = .with { $0.offset = UInt64(offset); $0.data = Data(bytes[offset..<end]) } })
                    offset = end
                }
            }
        }
        let sha256 = produced.sha256.isEmpty ? Hex.encode(SHA256.hash(data: produced.built.bytes)) : produced.sha256
        try await writer.write(.with { $0.digest = .with { $0.sha256 = sha256; $0.sizeBytes = UInt64(produced.size) } })
    }

    /// A stored object's bytes as chunks, from offset 0, each read on a dispatch thread (never on a thread that
    /// runs Swift tasks).
    static func writeChunks(of reader: BlobReader, chunkSize: Int, to writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        var offset: UInt64 = 0
        while offset < reader.size {
            let at = offset
            let data = try await offload { try reader.read(offset: at, length: chunkSize) }
            try await writer.write(.with { $0.chunk = .with { $0.offset = offset; $0.data = data } })
            offset += UInt64(data.count)
        }
    }
}
