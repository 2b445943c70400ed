import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumImaging
import AtriumRuntime
import AtriumStorage
import Crypto
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization
import AtriumPool

/// One shard of a split batch: a contiguous range of inputs, run here (`instance` nil) or on a peer.
struct Shard: Sendable {
    var index: Int
    var range: Range<Int>
    var instance: ProcessingPool.Instance?
}

/// A value the shards of a split batch update as they finish (what they cost, where they ran).
final class Shared<Value: Sendable>: Sendable {
    let value: Mutex<Value>
    init(_ value: Value) { self.value = Mutex(value) }
}

/// Results of a split batch as they arrive from every shard, taken in order. An entry is small: a registered
/// result is named by its digest in the registry's blob store, and only a projection's partial state (one per
/// shard) carries its bytes, so nothing is spooled to disk.
final class ResultQueue: Sendable {
    struct Entry: Sendable {
        var inputIndices: [Int]
        var imageID: String
        /// The digest the registry stored the result under; empty when it was not registered.
        var registeredSHA256: String
        var size: Int
        var rows: Int
        var columns: Int
        var bitsAllocated: Int
        /// The bytes, when they are not in the blob store: a projection's partial state, or a result that was not
        /// registered.
        var bytes: [UInt8]?

        /// The result as `emit` takes it.
        func produced(_ index: Int) -> Produced {
            Produced(
                index: index,
                inputIndices: inputIndices,
                built: BuiltResult(bytes: bytes ?? [], sopInstanceUID: "", rows: rows, columns: columns, bitsAllocated: bitsAllocated),
                imageID: imageID,
                sha256: registeredSHA256,
                referencedSize: bytes == nil ? size : nil
            )
        }
    }

    private struct State {
        var entries: [Int: Entry] = [:]
        /// Every index that has arrived, taken or not: a retried shard resumes after them.
        var arrived: Set<Int> = []
        var waiting: [Int: CheckedContinuation<Entry, any Error>] = [:]
        var failure: (any Error)?
    }
    private let state = Mutex(State())

    func put(_ index: Int, _ entry: Entry) {
        let waiter = state.withLock { state -> CheckedContinuation<Entry, any Error>? in
            guard state.arrived.insert(index).inserted else { return nil }
            if let waiter = state.waiting.removeValue(forKey: index) { return waiter }
            state.entries[index] = entry
            return nil
        }
        waiter?.resume(returning: entry)
    }

    func contains(_ index: Int) -> Bool { state.withLock { $0.arrived.contains(index) } }

    /// Fails every current and later `take`.
    func fail(_ error: any Error) {
        let waiters = state.withLock { state -> [CheckedContinuation<Entry, any Error>] in
            if state.failure == nil { state.failure = error }
            defer { state.waiting.removeAll() }
            return Array(state.waiting.values)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// The entry for `index`, once it has arrived.
    func take(_ index: Int) async throws -> Entry {
        try await withCheckedThrowingContinuation { continuation in
            let ready: Result<Entry, any Error>? = state.withLock { state in
                if let entry = state.entries.removeValue(forKey: index) { return .success(entry) }
                if let failure = state.failure { return .failure(failure) }
                state.waiting[index] = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// The shard coordinator: splits a batch of stored images across the serving processing instances in proportion
/// to their spare capacity, runs this instance's part on the executor and the others' through
/// `ProcessingInternal/RunShard`, merges what comes back in result order (a projection's partial states exactly),
/// and runs a failed shard again elsewhere. It also serves the shards other instances send here.
struct ShardCoordinator: Sendable {
    let instanceID: String
    /// The other processing instances (and this one); `nil` when none are configured, and then nothing is split.
    let peers: ProcessingPool?
    let workers: WorkerPool
    let preparation: RunPreparation
    let executor: RunExecutor
    let stream: ResultStream
    /// This instance's load now, to weigh its share against the peers'.
    let loadReport: @Sendable () async -> Atrium_V1_LoadReport
    let logger: Logger
}

extension ShardCoordinator {
    // MARK: - Planning

    /// How to split `run` across the serving instances, or `nil` to run it here unsplit: only batches of stored
    /// images split, and only slice-wise filters and projections. Explicit `header.shards` are checked (INVALID_ARGUMENT)
    /// and followed; otherwise each serving instance gets a contiguous share in proportion to its spare capacity.
    func shardPlan(for run: PreparedRun) async throws -> [Shard]? {
        let count = run.inputs.count
        let explicit = run.header.shards
        guard let peers, run.inputs.allSatisfy({ $0.imageID != nil }), count >= 2 else {
            if !explicit.isEmpty { throw ProcessingError.invalidArgument("shards apply only to a batch of stored images (image_ids or a series)") }
            return nil
        }
        if case .add = run.plan.kind { return explicit.isEmpty ? nil : try refuseShards("add takes two inputs and is not split") }
        if case .subtract = run.plan.kind { return explicit.isEmpty ? nil : try refuseShards("subtract takes two inputs and is not split") }
        // Serving instances other than this one, in a stable order; this one always takes part.
        let others = await peers.currentRotation().filter { !$0.instanceID.isEmpty && $0.instanceID != instanceID }.sorted { $0.instanceID < $1.instanceID }
        let candidates: [ProcessingPool.Instance?] = [nil] + others
        if !explicit.isEmpty {
            var next: UInt32 = 0
            for (index, range) in explicit.enumerated() {
                guard range.start == next, range.end > range.start else {
                    throw ProcessingError.invalidArgument("shards[\(index)] must start at \(next) and end after it; shards are contiguous and in order")
                }
                next = range.end
            }
            guard next == count else { throw ProcessingError.invalidArgument("shards cover \(next) inputs; the batch has \(count)") }
            // One shard is the whole batch: run it unsplit.
            if explicit.count == 1 { return nil }
            guard explicit.count <= candidates.count else {
                throw ProcessingError.invalidArgument("\(explicit.count) shards asked for, but \(candidates.count) instance\(candidates.count == 1 ? "" : "s") serve now")
            }
            return explicit.enumerated().map { Shard(index: $0, range: Int($1.start)..<Int($1.end), instance: candidates[$0]) }
        }
        guard !others.isEmpty else { return nil }
        let weights = [ProcessingPool.spareCapacity(of: await loadReport())] + others.map(\.spareCapacity)
        // Instances whose share rounds to nothing get no shard; shard indices stay dense.
        let assigned = zip(Self.split(count, weights: weights), candidates).filter { !$0.0.isEmpty }
        return assigned.enumerated().map { index, pair in Shard(index: index, range: pair.0, instance: pair.1) }
    }

    private func refuseShards(_ why: String) throws -> [Shard]? {
        throw ProcessingError.invalidArgument("shards given, but \(why)")
    }

    /// Contiguous ranges over `count` inputs, sized in proportion to `weights` (largest remainders). Weights are
    /// positive (``ProcessingPool/spareCapacity(of:outstanding:)`` never returns zero).
    static func split(_ count: Int, weights: [Double]) -> [Range<Int>] {
        let total = weights.reduce(0, +)
        let exact = weights.map { Double(count) * $0 / total }
        var sizes = exact.map { Int($0.rounded(.down)) }
        let order = exact.indices.sorted { (exact[$0] - Double(sizes[$0])) > (exact[$1] - Double(sizes[$1])) }
        for index in order.prefix(count - sizes.reduce(0, +)) { sizes[index] += 1 }
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return start..<(start + size)
        }
    }

    // MARK: - Coordinating

    /// Runs a split batch: every shard at once (this instance's on the calling worker, the others through
    /// RunShard), each result queued as it arrives (its bytes stay in the blob store) and handed to `emit` in
    /// result order.
    /// A shard whose instance fails is run again, once, on another (this one if no other serves), from its first
    /// missing result. A projection's partial states merge exactly; a sum that could not be added exactly is
    /// computed again here unsplit, so a split run always equals an unsplit one.
    func executeSplit(
        _ run: PreparedRun,
        shards: [Shard],
        holdsWorker: Bool,
        shouldStop: @escaping @Sendable () -> Bool,
        progress: @escaping @Sendable (RunTotals) async throws -> Void,
        emit: @escaping @Sendable (Produced) async throws -> Void
    ) async throws -> (totals: RunTotals, instances: [String]) {
        let queue = ResultQueue()
        let totals = Shared(RunTotals())
        let instances = Shared(shards.map { $0.instance?.instanceID ?? instanceID })
        let projection: Bool
        if case .projection = run.plan.kind { projection = true } else { projection = false }
        logger.info(
            "batch split",
            metadata: [
                LogKey.requestID: "\(run.caller.requestID)", "run": "\(run.key)",
                "shards": "\(shards.map { "\($0.instance?.instanceID ?? instanceID):\($0.range.lowerBound)-\($0.range.upperBound)" }.joined(separator: ","))",
            ]
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for shard in shards {
                group.addTask {
                    do {
                        let used = try await self.runShard(shard, of: run, queue: queue, totals: totals, projection: projection, holdsWorker: holdsWorker)
                        instances.value.withLock { $0[shard.index] = used }
                    } catch {
                        queue.fail(error)
                        throw error
                    }
                }
            }
            // Results in order, as they arrive.
            var emitted = RunTotals()
            if projection {
                var partials: [ProjectionAccumulator.Partial] = []
                for shard in shards {
                    partials.append(try Self.partial(try await queue.take(shard.index)))
                }
                try await group.waitForAll()
                var merged = totals.value.withLock { $0 }
                let (exact, produced) = try await self.mergeProjection(run, partials: partials, totals: &merged)
                if let produced {
                    try await emit(produced)
                } else {
                    logger.info("projection sum not exact when split; computing it unsplit", metadata: ["run": "\(run.key)", "exact": "\(exact)"])
                    let local = holdsWorker
                        ? try await executor.execute(run, shouldStop: shouldStop, progress: progress, emit: emit)
                        : try await workers.withWorker { try await executor.execute(run, shouldStop: shouldStop, progress: progress, emit: emit) }
                    // The shards recorded their images; this records the CPU the unsplit pass cost.
                    try executor.meter(run.shard(shards.count), images: 0, totals: local)
                    merged.cpuSeconds += local.cpuSeconds
                }
                return (merged, instances.value.withLock { $0 })
            }
            for index in run.inputs.indices {
                if shouldStop() { throw ProcessingError.cancelled("the job was cancelled") }
                try await emit(try await queue.take(index).produced(index))
                emitted.inputsDone = index + 1
                emitted.cpuSeconds = totals.value.withLock { $0.cpuSeconds }
                try await progress(emitted)
            }
            try await group.waitForAll()
            return (totals.value.withLock { $0 }, instances.value.withLock { $0 })
        }
    }

    /// Runs one shard where it was planned, or again elsewhere after a failure; returns the instance that ran it.
    private func runShard(_ shard: Shard, of run: PreparedRun, queue: ResultQueue, totals: Shared<RunTotals>, projection: Bool, holdsWorker: Bool) async throws -> String {
        var target = shard.instance
        var attempt = 0
        while true {
            attempt += 1
            // What is still missing: a filter shard resumes after the results that already arrived.
            // A projection's state arrives once, at the end: if it arrived, the shard is done.
            if projection && queue.contains(shard.index) { return target?.instanceID ?? instanceID }
            let start = projection ? shard.range.lowerBound : (shard.range.first { !queue.contains($0) } ?? shard.range.upperBound)
            let range = start..<shard.range.upperBound
            if range.isEmpty && !projection { return target?.instanceID ?? instanceID }
            do {
                if let target {
                    try await runRemote(shard.index, range: range, on: target, of: run, queue: queue, totals: totals, projection: projection)
                    return target.instanceID
                }
                try await runLocal(shard.index, range: range, of: run, queue: queue, totals: totals, projection: projection, holdsWorker: holdsWorker)
                return instanceID
            } catch let error as any RPCErrorConvertible where Self.retryable(error) && attempt == 1 {
                if let failed = target { peers?.markFailed(failed) }
                let next = peers?.all.first { $0.healthy && !$0.instanceID.isEmpty && $0.instanceID != instanceID && $0 !== target }
                logger.warning(
                    "shard failed; running it again elsewhere",
                    metadata: ["run": "\(run.key)", "shard": "\(shard.index)", "on": "\(target?.instanceID ?? instanceID)", "next": "\(next?.instanceID ?? instanceID)", LogKey.error: "\(error)"]
                )
                target = next
            }
        }
    }

    static func retryable(_ error: any RPCErrorConvertible) -> Bool {
        [.unavailable, .deadlineExceeded, .aborted, .unknown, .internalError, .cancelled].contains(error.rpcErrorCode)
    }

    /// This instance's part of a split batch, on a worker (the job's own when `holdsWorker`).
    private func runLocal(_ index: Int, range: Range<Int>, of run: PreparedRun, queue: ResultQueue, totals: Shared<RunTotals>, projection: Bool, holdsWorker: Bool) async throws {
        let shardRun = run.shard(index)
        let work: @Sendable () async throws -> RunTotals = {
            try await executor.execute(shardRun, range: range, partial: projection) { produced in
                queue.put(
                    projection ? index : produced.index,
                    .init(
                        inputIndices: produced.inputIndices, imageID: produced.imageID, registeredSHA256: produced.sha256, size: produced.size,
                        rows: produced.built.rows, columns: produced.built.columns, bitsAllocated: produced.built.bitsAllocated,
                        bytes: produced.registered ? nil : produced.built.bytes
                    )
                )
            }
        }
        let local = holdsWorker ? try await work() : try await workers.withWorker { try await work() }
        try executor.meter(shardRun, images: range.count, totals: local)
        totals.value.withLock {
            $0.cpuSeconds += local.cpuSeconds
            $0.megapixels += local.megapixels
            $0.bytesIn += local.bytesIn
        }
    }

    /// A peer's part of a split batch, read as it streams: a registered result comes as its image ID and digest
    /// only (``Atrium_V1_ShardRequest/registeredByReference``), a projection's partial state with its bytes.
    private func runRemote(_ index: Int, range: Range<Int>, on peer: ProcessingPool.Instance, of run: PreparedRun, queue: ResultQueue, totals: Shared<RunTotals>, projection: Bool) async throws {
        var header = run.header
        header.imageIds = .with { $0.imageIds = run.inputImageIDs }
        header.destinationIds = run.destinations
        header.shards = []
        header.shard = .with {
            $0.shardIndex = UInt32(index)
            $0.shardCount = UInt32(max(1, run.inputs.count))
            $0.range = .with { $0.start = UInt32(range.lowerBound); $0.end = UInt32(range.upperBound) }
        }
        let request = Atrium_V1_ShardRequest.with {
            $0.caller = run.caller.message
            $0.header = header
            $0.runKey = run.key
            $0.registeredByReference = true
        }
        peer.begin()
        defer { peer.end() }
        // A shard takes as long as its inputs do: no deadline of its own (it ends with the run that needs it).
        var options = CallOptions.internalCall
        options.timeout = nil
        let summary: Atrium_V1_RunSummary = try await peer.client.processingInternal.runShard(request, options: options) { response in
            var current: Atrium_V1_ResultImage?
            var buffer: [UInt8] = []
            for try await message in response.messages {
                switch message.part {
                case .result(let result):
                    current = result
                    buffer = []
                case .chunk(let chunk):
                    guard let result = current, UInt64(buffer.count) == chunk.offset, UInt64(buffer.count + chunk.data.count) <= result.sizeBytes else {
                        throw ProcessingError.internalError("shard \(index) on \(peer.instanceID) sent a chunk out of order")
                    }
                    // Only bytes that are kept (a projection's state, or a peer of an earlier version) are held here.
                    guard buffer.count + chunk.data.count <= 1 << 30 else {
                        throw ProcessingError.failedPrecondition("shard \(index) on \(peer.instanceID) sent more than 1 GiB for one result")
                    }
                    if buffer.isEmpty { buffer.reserveCapacity(Int(min(result.sizeBytes, 1 << 30))) }
                    buffer.append(contentsOf: chunk.data)
                case .digest(let digest):
                    guard let result = current, digest.sizeBytes == result.sizeBytes, Hex.isSHA256(digest.sha256) else {
                        throw ProcessingError.internalError("shard \(index) on \(peer.instanceID) sent a digest that does not match its result")
                    }
                    current = nil
                    let registered = !result.imageID.isEmpty && !result.projectionPartial
                    // Bytes that came are checked; a registered result's are then left where the registry stored them
                    // (a peer of an earlier version sends them anyway).
                    if !buffer.isEmpty || !registered {
                        guard UInt64(buffer.count) == result.sizeBytes, Hex.encode(SHA256.hash(data: buffer)) == digest.sha256 else {
                            throw ProcessingError.internalError("shard \(index) on \(peer.instanceID) sent a result that does not match its digest")
                        }
                    }
                    queue.put(
                        projection ? index : Int(result.index),
                        .init(
                            inputIndices: result.inputIndices.map { Int($0) }, imageID: result.imageID,
                            registeredSHA256: result.imageID.isEmpty ? "" : digest.sha256, size: Int(result.sizeBytes),
                            rows: Int(result.rows), columns: Int(result.columns), bitsAllocated: Int(result.bitsAllocated),
                            bytes: registered ? nil : buffer
                        )
                    )
                    buffer = []
                case .summary(let summary):
                    return summary
                case .header, nil:
                    continue
                }
            }
            throw ProcessingError.unavailable("shard \(index) on \(peer.instanceID) ended without a summary")
        }
        totals.value.withLock {
            $0.cpuSeconds += summary.cpuSeconds
            $0.megapixels += summary.megapixels
        }
    }

    /// A shard's projection state.
    private static func partial(_ entry: ResultQueue.Entry) throws -> ProjectionAccumulator.Partial {
        do {
            return try ProjectionAccumulator.Partial(bytes: entry.bytes ?? [])
        } catch {
            throw ProcessingError.internalError("a shard sent an unreadable projection state: \(error.detail)")
        }
    }

    /// Merges the shards' partial states in order into the result, registered like an unsplit run's; `nil` when
    /// a sum was not exact (the caller then computes it unsplit).
    private func mergeProjection(_ run: PreparedRun, partials: [ProjectionAccumulator.Partial], totals: inout RunTotals) async throws -> (Bool, Produced?) {
        let builder = ResultBuilder(plan: run.plan, derivationKey: run.derivationKey, softwareVersion: executor.softwareVersion)
        let first = run.inputs[0]
        let (blobs, inputs) = (executor.blobs, executor.inputs)
        let outcome: (exact: Bool, built: BuiltResult?, cpu: Double, patientID: String) = try await offload {
            let start = threadCPUSeconds()
            var merged: ProjectionAccumulator
            do {
                merged = try ProjectionAccumulator(partial: partials[0])
                for partial in partials.dropFirst() { try merged.merge(try ProjectionAccumulator(partial: partial)) }
            } catch {
                throw ProcessingError.internalError("the shards' projection states do not merge: \((error as? ImagingError)?.detail ?? "\(error)")")
            }
            guard merged.isExact else { return (false, nil, threadCPUSeconds() - start, "") }
            // The first input's attributes (patient, study, pixel type) from its header; every input by its record.
            let label = first.label(0)
            let reader = try first.open(blobs: blobs, inputs: inputs, label: label)
            let prefix = [UInt8](try reader.read(offset: 0, length: Int(min(reader.size, 256 << 10))))
            let info = prefix.count == Int(reader.size)
                ? try SourceDecoder.info(of: SourceDecoder.parse(prefix, label: label), label: label)
                : try SourceDecoder.header(prefix, totalLength: Int(reader.size), label: label)
            let sources = run.inputs.map { RunExecutor.reference(info, $0) }
            let image: Image2D
            do {
                image = try merged.result()
            } catch {
                throw ProcessingError.invalidArgument("\(run.plan.name): \((error as? ImagingError)?.detail ?? "\(error)")")
            }
            return (true, try builder.build([image], index: 0, sources: sources, geometry: nil), threadCPUSeconds() - start, info.patientID)
        }
        totals.cpuSeconds += outcome.cpu
        guard let built = outcome.built else { return (false, nil) }
        let registered = run.register ? try await executor.register(built, run: run, derivedFrom: run.inputImageIDs) : nil
        executor.recordAccess(run, input: first, patientID: outcome.patientID)
        totals.inputsDone = run.inputs.count
        return (true, Produced(index: 0, inputIndices: Array(run.inputs.indices), built: built, imageID: registered?.imageID ?? "", sha256: registered?.sha256 ?? ""))
    }

    // MARK: - Serving a shard

    /// `ProcessingInternal/RunShard`: one part of a batch another instance coordinates.
    func serveShard(_ request: Atrium_V1_ShardRequest, writer: RPCWriter<Atrium_V1_RunResponse>) async throws {
        let caller = try VerifiedCaller(message: request.caller)
        var header = request.header
        let shard = header.shard
        header.shard = Atrium_V1_ShardInfo()
        guard case .imageIds(let list) = header.inputs, !list.imageIds.isEmpty, list.imageIds.count <= 10_000 else {
            throw ProcessingError.invalidArgument("a shard's header lists its batch as 1 to 10000 image_ids")
        }
        let range = Int(shard.range.start)..<Int(shard.range.end)
        guard !range.isEmpty, range.upperBound <= list.imageIds.count else {
            throw ProcessingError.invalidArgument("shard range \(range) is outside the batch of \(list.imageIds.count)")
        }
        let plan = try OperationPlan(header.operation, outputType: header.outputType)
        // Only this shard's inputs are resolved (visibility is checked again here); the rest keep their place.
        var partHeader = header
        partHeader.imageIds = .with { $0.imageIds = Array(list.imageIds[range]) }
        let part = try await preparation.resolveStored(partHeader, plan: plan, caller: caller)
        var inputs = list.imageIds.map { id in RunInput.stored(.with { $0.imageID = id }) }
        for (offset, input) in part.enumerated() { inputs[range.lowerBound + offset] = input }
        let run = PreparedRun(
            caller: caller,
            header: header,
            plan: plan,
            destinations: header.destinationIds,
            inputs: inputs,
            register: true,
            key: request.runKey,
            method: Atrium_V1_ProcessingInternal.Method.RunShard.descriptor
        ).shard(Int(shard.shardIndex))
        let projection: Bool
        if case .projection = plan.kind { projection = true } else { projection = false }
        let started = ContinuousClock.now
        try await writer.write(.with {
            $0.header = stream.header(run, jobID: "", resultCount: projection ? 1 : range.count)
            $0.header.shard = shard
        })
        let totals = try await workers.withWorker {
            try await executor.execute(run, range: range, partial: projection) { produced in
                try await stream.write(produced, bytes: !(request.registeredByReference && produced.registered), to: writer)
            }
        }
        try executor.meter(run, images: range.count, totals: totals)
        try await writer.write(.with {
            $0.summary = .with {
                $0.cpuSeconds = totals.cpuSeconds
                $0.wallTime = .init(rounding: started.duration(to: .now))
                $0.megapixels = totals.megapixels
            }
        })
    }
}

extension PreparedRun {
    /// The same run as one shard of a split batch: its usage is keyed by the shard.
    func shard(_ index: Int) -> PreparedRun {
        var copy = self
        copy.key = "\(key)#\(index)"
        return copy
    }
}
