import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import Foundation
import GRPCCore
import Logging
import ServiceLifecycle
import Synchronization
import AtriumBackend

/// The job service: `Submit` and the job RPCs over this instance's job store, and the runs of queued jobs. A job
/// is a prepared run kept durably; it runs on a worker the scheduler holds for it, through the shard coordinator
/// or the executor, writes its results as it goes, resumes from them after a restart, and ends with its notice.
struct JobService: Sendable {
    let instanceID: String
    let store: JobStore
    /// This instance's result store (results that were not registered) and input store.
    let results: BlobStore
    let inputs: BlobStore
    /// How long a finished job's results are kept.
    let resultRetention: Duration
    let workers: WorkerPool
    /// What workers have done lately, for a queued job's ETA.
    let throughput: ThroughputMeter
    let preparation: RunPreparation
    let executor: RunExecutor
    let coordinator: ShardCoordinator
    /// Where a registered result is read (the registry's blob store) and the version results name.
    let stream: ResultStream
    /// Sends the notice outbox; woken when a job's notice is written.
    let noticePump: OutboxPump
    /// Rung when a job is queued: the scheduler waits on it instead of polling the job store.
    let jobQueued = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    /// Jobs asked to stop, by ID (Cancel of a running job); the run stops at its next input.
    let cancelledJobs = Shared(Set<String>())
    let logger: Logger
    let now: @Sendable () -> Date
}

extension JobService {
    static func micros(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1_000_000).rounded()) }
    static func timestamp(_ micros: Int64) -> Google_Protobuf_Timestamp {
        Google_Protobuf_Timestamp(seconds: micros / 1_000_000, nanos: Int32(micros % 1_000_000) * 1000)
    }

    // MARK: - Submit

    /// Queues a prepared request as a job and returns it (QUEUED, with its queue position).
    func submit(_ run: PreparedRun) async throws -> Atrium_V1_ProcessingJob {
        let id = "\(Identifier.make(prefix: "job"))@\(instanceID)"
        var header = run.header
        if !run.inputImageIDs.isEmpty {
            header.imageIds = .with { $0.imageIds = run.inputImageIDs }
        }
        let job = JobRow(
            id: id,
            submitter: try run.caller.message.serializedBytes(),
            submitterID: run.caller.subscriberID,
            header: try header.serializedBytes(),
            state: JobState.queued,
            createdAt: Self.micros(now()),
            inputCount: run.inputs.count,
            inputsDone: 0,
            megapixels: run.inputs.reduce(0) { $0 + $1.megapixels },
            failureCode: 0,
            failureReason: "",
            resultCount: 0,
            cpuSeconds: 0,
            inputImageIDs: run.inputImageIDs.joined(separator: " ")
        )
        let inline = run.inputs.enumerated().compactMap { index, input -> JobInputRow? in
            guard case .spooled(let sha256, let size) = input else { return nil }
            return JobInputRow(jobID: id, index: index, sha256: sha256, size: Int64(size))
        }
        do {
            try await store.insert(job, inputs: inline)
            jobQueued.continuation.yield()
        } catch {
            logger.error("cannot record a job", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(run.caller.requestID)"])
            await preparation.discardSpooled(run.inputs)
            throw ProcessingError.unavailable("the job cannot be recorded right now; nothing was queued, try again")
        }
        logger.info("job queued", metadata: ["job": "\(id)", LogKey.requestID: "\(run.caller.requestID)", "operation": "\(run.plan.summary)", "inputs": "\(run.inputs.count)"])
        return try await message(for: job)
    }

    // MARK: - Reading jobs

    /// A job the caller submitted; NOT_FOUND otherwise (another's job is not revealed).
    func ownJob(_ id: String, caller: VerifiedCaller) async throws -> JobRow {
        guard (1...160).contains(id.utf8.count), let job = try await storedJob(id), job.submitterID == caller.subscriberID else {
            throw ProcessingError.notFound("job '\(id.prefix(160))' not found")
        }
        return job
    }

    private func storedJob(_ id: String) async throws -> JobRow? {
        do {
            return try await store.job(id)
        } catch {
            logger.error("cannot read a job", metadata: [LogKey.error: "\(error)", "job": "\(id)"])
            throw ProcessingError.unavailable("the job store cannot be read right now; try again")
        }
    }

    /// A job as the API shows it, with its queue position and ETA while it waits or runs.
    func message(for job: JobRow) async throws -> Atrium_V1_ProcessingJob {
        let header = try Atrium_V1_RunHeader(serializedBytes: job.header)
        let plan = try? OperationPlan(header.operation, outputType: header.outputType)
        let results = job.state == JobState.succeeded ? try await store.results(of: job.id) : []
        var message = Atrium_V1_ProcessingJob.with {
            $0.jobID = job.id
            $0.state = Atrium_V1_ProcessingJob.State(rawValue: job.state) ?? .unspecified
            $0.inputsDone = UInt32(clamping: job.inputsDone)
            $0.inputCount = UInt32(clamping: job.inputCount)
            $0.progress = job.inputCount == 0 ? 0 : min(1, Double(job.inputsDone) / Double(job.inputCount))
            $0.failureCode = Int32(job.failureCode)
            $0.failureReason = job.failureReason
            $0.operation = plan?.applied ?? header.operation
            $0.outputType = plan?.outputType ?? header.outputType
            $0.destinationIds = header.destinationIds
            $0.sourceSubscriberID = job.submitterID
            $0.submitterID = job.submitterID
            $0.instanceID = instanceID
            $0.createdAt = Self.timestamp(job.createdAt)
            if let started = job.startedAt { $0.startedAt = Self.timestamp(started) }
            if let finished = job.finishedAt { $0.finishedAt = Self.timestamp(finished) }
            $0.resultCount = UInt32(clamping: job.resultCount)
            $0.resultImageIds = results.map(\.imageID).filter { !$0.isEmpty }
            if let expiry = job.resultsExpireAt { $0.resultsExpireAt = Self.timestamp(expiry) }
        }
        if job.state == JobState.succeeded { message.progress = 1 }
        // ETA: the megapixels ahead of this job's end, at the throughput workers reached lately.
        if job.state == JobState.queued || job.state == JobState.running, let rate = throughput.perWorker, rate > 0 {
            let remaining = job.megapixels * (1 - message.progress)
            var ahead = 0.0
            if job.state == JobState.queued {
                let queue = try await store.queue()
                if let position = queue.firstIndex(where: { $0.id == job.id }) {
                    message.queuePosition = UInt32(position + 1)
                    ahead = queue.prefix(position).reduce(0) { $0 + $1.megapixels }
                }
            }
            let seconds = (ahead / Double(workers.size) + remaining) / rate
            message.estimatedCompletion = .init(date: now().addingTimeInterval(seconds))
        } else if job.state == JobState.queued {
            let queue = try await store.queue()
            if let position = queue.firstIndex(where: { $0.id == job.id }) { message.queuePosition = UInt32(position + 1) }
        }
        return message
    }

    /// A SUCCEEDED job whose results `caller` may fetch (the submitter or a destination), with its results.
    func finishedJob(_ request: Atrium_V1_GetJobResultRequest, caller: VerifiedCaller) async throws -> (JobRow, [JobResultRow]) {
        let id = request.jobID
        guard request.chunkSize == 0 || (64 << 10)...(1 << 20) ~= Int(request.chunkSize) else {
            throw ProcessingError.invalidArgument("chunk_size must be 0 or 65536 to 1048576 bytes")
        }
        guard (1...160).contains(id.utf8.count), let job = try await storedJob(id) else { throw ProcessingError.notFound("job '\(id.prefix(160))' not found") }
        let header = try Atrium_V1_RunHeader(serializedBytes: job.header)
        guard job.submitterID == caller.subscriberID || header.destinationIds.contains(caller.subscriberID) else {
            throw ProcessingError.notFound("job '\(id)' not found")
        }
        guard job.state == JobState.succeeded else {
            let state = Atrium_V1_ProcessingJob.State(rawValue: job.state).map { "\($0)" } ?? "\(job.state)"
            throw ProcessingError.failedPrecondition("job '\(id)' has no result: it is \(state.uppercased())")
        }
        guard let expiry = job.resultsExpireAt, expiry > Self.micros(now()) else {
            throw ProcessingError.notFound("the results of job '\(id)' have expired; registered result images stay in the registry")
        }
        let results = try await store.results(of: id)
        guard request.fromResult <= results.count else {
            throw ProcessingError.invalidArgument("from_result \(request.fromResult) is beyond the job's \(results.count) results")
        }
        return (job, results)
    }

    /// Streams a finished job's results from the result store, from result `from`.
    func streamResults(of job: JobRow, results: [JobResultRow], from: Int, chunkSize: Int, to writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        let header = try Atrium_V1_RunHeader(serializedBytes: job.header)
        let plan = try OperationPlan(header.operation, outputType: header.outputType)
        try await writer.write(
            .with {
                $0.header = .with {
                    $0.operation = plan.applied
                    $0.outputType = plan.outputType
                    $0.inputImageIds = job.inputImageIDs.split(separator: " ").map(String.init)
                    $0.inputCount = UInt32(job.inputCount)
                    $0.instanceIds = [instanceID]
                    $0.softwareVersion = stream.softwareVersion
                    $0.resultCount = UInt32(results.count)
                    $0.jobID = job.id
                }
            }
        )
        for result in results.dropFirst(from) {
            // A registered result is read from the registry's blob store, an unregistered one from this instance's.
            let reader: BlobReader
            do {
                if let local = try? self.results.openReader(result.sha256) { reader = local } else { reader = try stream.blobs.openReader(result.sha256) }
            } catch {
                throw ProcessingError.dataLoss("result \(result.index) of job '\(job.id)' is missing from this instance's result store")
            }
            try await writer.write(
                .with {
                    $0.result = .with {
                        $0.index = UInt32(result.index)
                        $0.inputIndices = result.inputIndices.split(separator: " ").compactMap { UInt32($0) }
                        $0.sizeBytes = UInt64(result.size)
                        $0.imageID = result.imageID
                        $0.rows = UInt32(result.rows)
                        $0.columns = UInt32(result.columns)
                        $0.bitsAllocated = UInt32(result.bitsAllocated)
                    }
                }
            )
            guard reader.size == UInt64(result.size) else {
                throw ProcessingError.dataLoss("result \(result.index) of job '\(job.id)' has \(reader.size) bytes in the store; it was made with \(result.size)")
            }
            // The digest is the one the bytes were stored under, not computed again: the SDK checks every result
            // against it, so damage in the store is reported to the client as DATA_LOSS.
            try await ResultStream.writeChunks(of: reader, chunkSize: chunkSize, to: writer)
            try await writer.write(.with { $0.digest = .with { $0.sha256 = result.sha256; $0.sizeBytes = UInt64(result.size) } })
        }
        try await writer.write(
            .with {
                $0.summary = .with {
                    $0.cpuSeconds = job.cpuSeconds
                    if let started = job.startedAt, let finished = job.finishedAt {
                        $0.wallTime = .init(rounding: .microseconds(finished - started))
                    }
                    $0.megapixels = job.megapixels
                    $0.resultImageIds = results.map(\.imageID).filter { !$0.isEmpty }
                }
            }
        )
    }

    // MARK: - Cancel and list

    func cancel(_ request: Atrium_V1_CancelJobRequest, caller: VerifiedCaller) async throws -> Atrium_V1_ProcessingJob {
        guard request.reason.utf8.count <= 1024 else { throw ProcessingError.invalidArgument("reason must be at most 1024 bytes") }
        let job = try await ownJob(request.jobID, caller: caller)
        let reason = request.reason.isEmpty ? "cancelled by \(caller.subscriberID)" : request.reason
        if job.state == JobState.running { cancelledJobs.value.withLock { _ = $0.insert(job.id) } }
        guard try await store.finish(job.id, state: JobState.cancelled, at: Self.micros(now()), code: 1, reason: reason) else {
            cancelledJobs.value.withLock { _ = $0.remove(job.id) }
            let current = try await ownJob(job.id, caller: caller)
            let state = Atrium_V1_ProcessingJob.State(rawValue: current.state).map { "\($0)" } ?? "\(current.state)"
            throw ProcessingError.failedPrecondition("job '\(job.id)' cannot be cancelled: it is already \(state.uppercased())")
        }
        logger.info("job cancelled", metadata: ["job": "\(job.id)", LogKey.requestID: "\(caller.requestID)"])
        await discardJobInputs(job.id)
        return try await message(for: try await ownJob(job.id, caller: caller))
    }

    func listJobs(_ request: Atrium_V1_ListJobsRequest, caller: VerifiedCaller) async throws -> Atrium_V1_ListJobsResponse {
        guard request.page.pageSize <= 1000 else { throw ProcessingError.invalidArgument("page.page_size must be at most 1000") }
        let size = request.page.pageSize == 0 ? 100 : Int(request.page.pageSize)
        var after: (time: Int64, id: String)?
        if !request.page.pageToken.isEmpty {
            let parts = request.page.pageToken.split(separator: "/", maxSplits: 1)
            guard parts.count == 2, let time = Int64(parts[0]), parts[1].utf8.count <= 160 else {
                throw ProcessingError.invalidArgument("page.page_token was not issued by ListJobs")
            }
            after = (time, String(parts[1]))
        }
        for state in request.states {
            guard case .some = Atrium_V1_ProcessingJob.State(rawValue: state.rawValue), state != .unspecified else {
                throw ProcessingError.invalidArgument("states holds an unknown state \(state.rawValue)")
            }
        }
        let from = request.hasCreated && request.created.hasStart ? Self.micros(request.created.start.date) : nil
        let to = request.hasCreated && request.created.hasEnd ? Self.micros(request.created.end.date) : nil
        let jobs = try await store.jobs(submitterID: caller.subscriberID, states: request.states.map(\.rawValue), createdFrom: from, createdTo: to, after: after, limit: size)
        var response = Atrium_V1_ListJobsResponse()
        for job in jobs { response.jobs.append(try await message(for: job)) }
        if jobs.count == size, let last = jobs.last { response.nextPageToken = "\(last.createdAt)/\(last.id)" }
        return response
    }

    // MARK: - Running jobs

    /// Runs one job on the worker the scheduler holds for it.
    func runJob(_ job: JobRow) async {
        do {
            let caller = try VerifiedCaller(message: Atrium_V1_CallerIdentity(serializedBytes: job.submitter))
            let header = try Atrium_V1_RunHeader(serializedBytes: job.header)
            let plan = try OperationPlan(header.operation, outputType: header.outputType)
            let inputs: [RunInput]
            if case .inlineImageCount = header.inputs {
                inputs = try await store.inputs(of: job.id).map { row in
                    guard (try? self.inputs.contains(row.sha256)) == true else {
                        throw ProcessingError.dataLoss("inline input \(row.index) is missing from this instance's input store")
                    }
                    return .spooled(sha256: row.sha256, size: UInt64(row.size))
                }
            } else {
                // Visibility is checked again: a share revoked since Submit stops the job.
                inputs = try await preparation.resolveStored(header, plan: plan, caller: caller)
            }
            let run = PreparedRun(
                caller: caller,
                header: header,
                plan: plan,
                destinations: header.destinationIds,
                inputs: inputs,
                register: inputs.contains { $0.imageID != nil } || !header.destinationIds.isEmpty,
                key: job.id,
                method: Atrium_V1_Processing.Method.Submit.descriptor
            )
            let done = Set(try await store.results(of: job.id).map(\.index))
            if !done.isEmpty { logger.info("job resumed", metadata: ["job": "\(job.id)", "results_kept": "\(done.count)"]) }
            let store = self.store
            let results = self.results
            let id = job.id
            let cancelledJobs = self.cancelledJobs
            let shouldStop: @Sendable () -> Bool = { cancelledJobs.value.withLock { $0.contains(id) } }
            // Progress is written at most four times a second: each write is a durable commit.
            let lastProgress = Shared(ContinuousClock.now - .seconds(1))
            let progress: @Sendable (RunTotals) async throws -> Void = { totals in
                let due = lastProgress.value.withLock { last in
                    guard last.duration(to: .now) >= .milliseconds(250) else { return false }
                    last = .now
                    return true
                }
                if due { try await store.progress(id, inputsDone: totals.inputsDone, cpuSeconds: job.cpuSeconds + totals.cpuSeconds) }
            }
            // A registered result is already durable in the registry's blob store: the job keeps only a row naming
            // it. Others are written to this instance's result store. Rows are committed in batches.
            let pending = Shared([JobResultRow]())
            let flush: @Sendable (Bool) async throws -> Void = { force in
                let rows = pending.value.withLock { rows -> [JobResultRow] in
                    guard force || rows.count >= 32 else { return [] }
                    defer { rows.removeAll() }
                    return rows
                }
                guard !rows.isEmpty else { return }
                try await store.add(rows, inputsDone: (rows.compactMap { $0.inputIndices.split(separator: " ").last.flatMap { Int($0) } }.max() ?? -1) + 1)
            }
            let emit: @Sendable (Produced) async throws -> Void = { produced in
                var sha256 = produced.sha256
                if sha256.isEmpty {
                    let writer = try results.makeWriter()
                    do {
                        try writer.write(produced.built.bytes)
                        sha256 = try await writer.commitOffloaded().sha256
                    } catch {
                        writer.abort()
                        throw error
                    }
                }
                let row = JobResultRow(
                    jobID: id,
                    index: produced.index,
                    sha256: sha256,
                    size: Int64(produced.size),
                    imageID: produced.imageID,
                    rows: produced.built.rows,
                    columns: produced.built.columns,
                    bitsAllocated: produced.built.bitsAllocated,
                    inputIndices: produced.inputIndices.map(String.init).joined(separator: " ")
                )
                pending.value.withLock { $0.append(row) }
                try await flush(false)
            }
            // A fresh job may be split across the serving instances (each records the usage of its shard); a
            // resumed one finishes here, after the results it kept.
            let totals: RunTotals
            if done.isEmpty, let shards = try await coordinator.shardPlan(for: run) {
                totals = try await coordinator.executeSplit(run, shards: shards, holdsWorker: true, shouldStop: shouldStop, progress: progress, emit: emit).totals
                try await flush(true)
            } else {
                totals = try await executor.execute(run, skip: done, shouldStop: shouldStop, progress: progress, emit: emit)
                try await flush(true)
                // One event for the whole job: an interrupted attempt recorded none, and its CPU is in the job row.
                var whole = totals
                whole.cpuSeconds += job.cpuSeconds
                try executor.meter(run, images: run.inputs.count, totals: whole)
            }
            let stored = try await store.results(of: job.id)
            let refs = stored.filter { !$0.imageID.isEmpty }.map { row in Atrium_V1_ImageRef.with { $0.imageID = row.imageID; $0.sha256 = row.sha256 } }
            let recipients = header.destinationIds.isEmpty ? [caller.subscriberID] : header.destinationIds
            let finished = Self.micros(now())
            let succeeded = try await store.succeed(
                job.id,
                at: finished,
                expiresAt: finished + resultRetention.components.seconds * 1_000_000,
                resultCount: stored.count,
                cpuSeconds: job.cpuSeconds + totals.cpuSeconds,
                notice: try executor.notice(for: run, imageRefs: refs, jobID: job.id, recipients: recipients)
            )
            if succeeded {
                noticePump.wake()
                logger.info("job succeeded", metadata: ["job": "\(job.id)", "results": "\(stored.count)", "cpu_s": "\(totals.cpuSeconds)"])
            }
            await discardJobInputs(job.id)
        } catch is CancellationError {
            // The instance is shutting down: the job stays RUNNING and resumes at the next start.
            logger.info("job interrupted by shutdown; it resumes at the next start", metadata: ["job": "\(job.id)"])
        } catch let error as any RPCErrorConvertible where error.rpcErrorCode == .cancelled {
            cancelledJobs.value.withLock { _ = $0.remove(job.id) }
        } catch let error as any RPCErrorConvertible {
            await fail(job.id, code: error.rpcErrorCode.rawValue, reason: error.rpcErrorMessage)
        } catch {
            await fail(job.id, code: RPCError.Code.internalError.rawValue, reason: "\(error)")
        }
    }

    private func fail(_ id: String, code: Int, reason: String) async {
        logger.warning("job failed", metadata: ["job": "\(id)", "reason": "\(reason)"])
        do {
            _ = try await store.finish(id, state: JobState.failed, at: Self.micros(now()), code: code, reason: reason)
        } catch {
            logger.error("cannot record a job's failure; it will be retried at the next start", metadata: ["job": "\(id)", LogKey.error: "\(error)"])
        }
        await discardJobInputs(id)
    }

    /// Removes a finished job's inline inputs from the input store (unless another job uses the same bytes).
    func discardJobInputs(_ id: String) async {
        guard let rows = try? await store.inputs(of: id) else { return }
        for row in rows {
            if (try? await store.inputInUse(row.sha256, except: id)) == false { try? inputs.remove(row.sha256) }
        }
    }

    /// At start: jobs a previous process left RUNNING go back to the queue, to resume from their results.
    func recoverJobs() async throws {
        let requeued = try await store.requeueInterrupted()
        for id in requeued {
            logger.info("job interrupted by a restart; queued again to resume", metadata: ["job": "\(id)"])
        }
    }

    /// Removes results past their retention.
    func expireResults() async {
        do {
            let (resultBlobs, inputBlobs) = try await store.expire(before: Self.micros(now()))
            for sha256 in resultBlobs { try? results.remove(sha256) }
            for sha256 in inputBlobs { try? inputs.remove(sha256) }
            if !resultBlobs.isEmpty { logger.info("expired job results removed", metadata: ["blobs": "\(resultBlobs.count)"]) }
        } catch {
            logger.error("cannot expire job results", metadata: [LogKey.error: "\(error)"])
        }
    }
}

/// Takes queued jobs, oldest first, whenever a worker is free, and expires old results hourly. At graceful
/// shutdown it stops taking jobs; a running job stops at its next input and stays RUNNING, to resume at the
/// next start from the results it recorded.
struct JobScheduler: Service {
    let jobs: JobService

    func run() async throws {
        try await jobs.recoverJobs()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    while !Task.isCancelled {
                        await jobs.expireResults()
                        try? await Task.sleep(for: .seconds(3600))
                    }
                }
                var queued = jobs.jobQueued.stream.makeAsyncIterator()
                while !Task.isCancelled {
                    // Wait for a worker only when a job is queued, so that an idle scheduler is not counted as
                    // waiting work in the load it reports; with nothing queued, wait (without waking) for a Submit.
                    let waiting: Bool
                    do {
                        waiting = try await jobs.store.nextQueued() != nil
                    } catch {
                        jobs.logger.warning("cannot read the job queue; trying again", metadata: [LogKey.error: "\(error)"])
                        try? await Task.sleep(for: .seconds(1))
                        continue
                    }
                    guard waiting else {
                        guard await queued.next() != nil else { break }
                        continue
                    }
                    do {
                        try await jobs.workers.acquire()
                    } catch {
                        break
                    }
                    // The oldest queued job, moved to RUNNING before another worker can take it.
                    guard let job = try? await jobs.store.nextQueued(),
                        (try? await jobs.store.start(job.id, at: JobService.micros(jobs.now()))) == true
                    else {
                        jobs.workers.release()
                        continue
                    }
                    group.addTask {
                        await jobs.runJob(job)
                        jobs.workers.release()
                    }
                }
                group.cancelAll()
            }
        }
    }
}
