import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumDICOM
import AtriumImaging
import AtriumRuntime
import AtriumStorage
import Foundation
import GRPCCore
import Logging
import AtriumBackend

/// A result made and, when the run registers, registered.
struct Produced: Sendable {
    var index: Int
    var inputIndices: [Int]
    /// The result; its `bytes` are empty when ``referencedSize`` is set.
    var built: BuiltResult
    var imageID: String
    /// The bytes are a projection's partial state (a shard's), not a DICOM object.
    var partial = false
    /// The SHA-256 of the bytes as the registry stored them; empty when the result was not registered.
    var sha256 = ""
    /// Set when the bytes are not carried: they are the registered object `sha256` in the registry's blob store,
    /// of this size (a peer's result in a split batch).
    var referencedSize: Int? = nil

    var size: Int { referencedSize ?? built.bytes.count }
    /// A DICOM result the registry stored (not a projection's partial state): its bytes are in the blob store.
    var registered: Bool { !imageID.isEmpty && !partial }
}

/// A result as the registry stored it.
struct Registered: Sendable {
    var imageID: String
    var sha256: String
}

/// What a run cost.
struct RunTotals: Sendable {
    var cpuSeconds: Double = 0
    var megapixels: Double = 0
    var bytesIn: UInt64 = 0
    var inputsDone = 0
}

/// State a run's compute steps share across offloaded calls. Only one step touches it at a time.
private final class ProjectionState: @unchecked Sendable {
    var accumulator: ProjectionAccumulator?
    var sources: [SourceInfo] = []
}

/// The executor: runs a prepared run (or one shard of it) on the calling worker through the engine, registers
/// its results with the registry for the caller, records each access to patient data, and writes the run's
/// usage event and inbox notice. It does not stream: results go to the `emit` the caller passes.
struct RunExecutor: Sendable {
    /// The version written into results.
    let softwareVersion: String
    /// The registry's blob store (read-only) and this instance's input store.
    let blobs: BlobStore
    let inputs: BlobStore
    let registry: any Atrium_V1_RegistryInternal.ClientProtocol
    let throughput: ThroughputMeter
    let audit: AuditTrail
    let usage: UsageOutbox
    /// Sends the usage outbox; woken when an event is written.
    let usagePump: OutboxPump
    let logger: Logger
    let now: @Sendable () -> Date
}

extension RunExecutor {
    // MARK: - Execution

    /// Runs `run` on the calling worker: makes each result not in `skip`, registers it when the run registers,
    /// and hands it to `emit`, in result order. `progress` hears after each input; `shouldStop` is asked before
    /// each input (a cancelled job stops there with CANCELLED). With `range`, only those inputs (a shard); with
    /// `partial`, a projection emits its partial state instead of a result.
    func execute(
        _ run: PreparedRun,
        range: Range<Int>? = nil,
        partial: Bool = false,
        skip: Set<Int> = [],
        shouldStop: @escaping @Sendable () -> Bool = { false },
        progress: @escaping @Sendable (RunTotals) async throws -> Void = { _ in },
        emit: @escaping @Sendable (Produced) async throws -> Void
    ) async throws -> RunTotals {
        let builder = ResultBuilder(plan: run.plan, derivationKey: run.derivationKey, softwareVersion: softwareVersion)
        let (blobs, inputs, plan, meter) = (self.blobs, self.inputs, run.plan, throughput)
        var totals = RunTotals()
        func account(_ megapixels: Double, cpu: Double, bytes: UInt64) {
            totals.cpuSeconds += cpu
            totals.megapixels += megapixels
            totals.bytesIn += bytes
            totals.inputsDone += 1
            meter.record(megapixels: megapixels, seconds: cpu)
        }
        func stopIfAsked() throws {
            try Task.checkCancellation()
            if shouldStop() { throw ProcessingError.cancelled("the job was cancelled") }
        }
        switch plan.kind {
        case .smooth, .derivative, .laplacian, .lines, .bandpass:
            // Registration (a round trip and the registry's fsyncs) overlaps computing the next inputs: up to
            // `window` results are being registered at once; results still reach `emit` in input order.
            let window = run.register ? 4 : 1
            try await withThrowingTaskGroup(of: (Int, Registered).self) { group in
                var registering: [Int: Produced] = [:]
                var ready: [Int: Produced] = [:]
                var order: [Int] = []
                var emitted = 0
                var inFlight = 0
                let indices = Array(range ?? run.inputs.indices)
                for (position, index) in indices.enumerated() {
                    let input = run.inputs[index]
                    if skip.contains(index) {
                        totals.inputsDone += 1
                    } else {
                        try stopIfAsked()
                        let label = input.label(index)
                        let (built, megapixels, cpu, patientID) = try await offload {
                            let start = threadCPUSeconds()
                            let source = try SourceDecoder.decode(try input.read(blobs: blobs, inputs: inputs, label: label), label: label)
                            var frames: [Image2D] = []
                            do {
                                for frame in source.frames { frames.append(try plan.filter(frame)) }
                            } catch {
                                throw ProcessingError.invalidArgument("\(label): \((error as? ImagingError)?.detail ?? "\(error)")")
                            }
                            let built = try builder.build(frames, index: index, sources: [source.info], geometry: source.info)
                            let megapixels = Double(source.info.rows * source.info.columns * source.info.frames) / 1e6
                            return (built, megapixels, threadCPUSeconds() - start, source.info.patientID)
                        }
                        account(megapixels, cpu: cpu, bytes: input.size)
                        recordAccess(run, input: input, patientID: patientID)
                        let produced = Produced(index: index, inputIndices: [index], built: built, imageID: "")
                        order.append(index)
                        if run.register {
                            registering[index] = produced
                            let derivedFrom = input.imageID.map { [$0] } ?? []
                            group.addTask { (index, try await self.register(built, run: run, derivedFrom: derivedFrom)) }
                            inFlight += 1
                        } else {
                            ready[index] = produced
                        }
                    }
                    // Collect registrations (all of them after the last input), then emit what is ready, in order.
                    let last = position == indices.count - 1
                    while inFlight > 0 && (inFlight >= window || last) {
                        guard let (index, registered) = try await group.next() else { break }
                        inFlight -= 1
                        var produced = registering.removeValue(forKey: index)!
                        produced.imageID = registered.imageID
                        produced.sha256 = registered.sha256
                        ready[index] = produced
                    }
                    while emitted < order.count, let produced = ready.removeValue(forKey: order[emitted]) {
                        try await emit(produced)
                        emitted += 1
                        try await progress(totals)
                    }
                }
            }
        case .add, .subtract:
            if skip.contains(0) { return totals }
            try stopIfAsked()
            let (a, b) = (run.inputs[0], run.inputs[1])
            let (built, megapixels, cpu, patientID) = try await offload {
                let start = threadCPUSeconds()
                let first = try SourceDecoder.decode(try a.read(blobs: blobs, inputs: inputs, label: a.label(0)), label: a.label(0))
                let second = try SourceDecoder.decode(try b.read(blobs: blobs, inputs: inputs, label: b.label(1)), label: b.label(1))
                guard first.frames.count == second.frames.count else {
                    throw ProcessingError.invalidArgument("\(plan.name) needs inputs with as many frames: A has \(first.frames.count), B has \(second.frames.count)")
                }
                var frames: [Image2D] = []
                do {
                    for (x, y) in zip(first.frames, second.frames) {
                        frames.append(plan.kind == .add ? try Image2D.add(x, y) : try Image2D.subtract(x, y))
                    }
                } catch {
                    throw ProcessingError.invalidArgument("\(plan.name): shapes differ: A is \(first.info.rows)×\(first.info.columns), B is \(second.info.rows)×\(second.info.columns)")
                }
                let built = try builder.build(frames, index: 0, sources: [first.info, second.info], geometry: first.info)
                let megapixels = Double(2 * first.info.rows * first.info.columns * first.info.frames) / 1e6
                return (built, megapixels, threadCPUSeconds() - start, first.info.patientID)
            }
            account(megapixels, cpu: cpu, bytes: a.size + b.size)
            totals.inputsDone = 2
            let registered = run.register ? try await register(built, run: run, derivedFrom: run.inputImageIDs) : nil
            recordAccess(run, input: a, patientID: patientID)
            try await emit(Produced(index: 0, inputIndices: [0, 1], built: built, imageID: registered?.imageID ?? "", sha256: registered?.sha256 ?? ""))
        case .projection(let kind, let axis):
            if skip.contains(0) { return totals }
            let state = ProjectionState()
            let range = range ?? run.inputs.indices
            for index in range {
                let input = run.inputs[index]
                try stopIfAsked()
                let label = input.label(index)
                let (megapixels, cpu) = try await offload {
                    let start = threadCPUSeconds()
                    let source = try SourceDecoder.decode(try input.read(blobs: blobs, inputs: inputs, label: label), label: label)
                    do {
                        if state.accumulator == nil {
                            state.accumulator = try ProjectionAccumulator(kind: kind, axis: axis, rows: source.info.rows, columns: source.info.columns)
                        }
                        for frame in source.frames { try state.accumulator!.add(frame) }
                    } catch {
                        throw ProcessingError.invalidArgument("\(label) cannot join the stack: it is \(source.info.rows)×\(source.info.columns), the first input is \(state.sources.first.map { "\($0.rows)×\($0.columns)" } ?? "?") (\((error as? ImagingError)?.detail ?? "\(error)"))"
                        )
                    }
                    state.sources.append(Self.reference(source.info, input))
                    return (Double(source.info.rows * source.info.columns * source.info.frames) / 1e6, threadCPUSeconds() - start)
                }
                account(megapixels, cpu: cpu, bytes: input.size)
                try await progress(totals)
            }
            if partial, let accumulator = state.accumulator {
                let built = BuiltResult(bytes: accumulator.partial.bytes, sopInstanceUID: "", rows: accumulator.rows, columns: accumulator.columns, bitsAllocated: 0)
                try await emit(Produced(index: range.lowerBound, inputIndices: Array(range), built: built, imageID: "", partial: true))
                return totals
            }
            let (built, cpu) = try await offload {
                let start = threadCPUSeconds()
                let image: Image2D
                do {
                    image = try state.accumulator!.result()
                } catch {
                    throw ProcessingError.invalidArgument("\(plan.name): \((error as? ImagingError)?.detail ?? "\(error)")")
                }
                return (try builder.build([image], index: 0, sources: state.sources, geometry: nil), threadCPUSeconds() - start)
            }
            totals.cpuSeconds += cpu
            let registered = run.register ? try await register(built, run: run, derivedFrom: run.inputImageIDs) : nil
            recordAccess(run, input: run.inputs[0], patientID: state.sources.first?.patientID ?? "")
            try await emit(Produced(index: 0, inputIndices: Array(run.inputs.indices), built: built, imageID: registered?.imageID ?? "", sha256: registered?.sha256 ?? ""))
        }
        return totals
    }

    /// A source as the Source Image Sequence names it: a stored input by its record's SOP class and instance
    /// (what a coordinator merging shards has, so split and unsplit runs write the same object).
    static func reference(_ info: SourceInfo, _ input: RunInput) -> SourceInfo {
        guard case .stored(let record) = input else { return info }
        var reference = info
        reference.sopClassUID = record.sopClassUid
        reference.sopInstanceUID = record.sopInstanceUid
        return reference
    }

    func recordAccess(_ run: PreparedRun, input: RunInput, patientID: String) {
        guard let imageID = input.imageID, case .stored(let stored) = input else { return }
        record(run.caller, run.method, resource: imageID, owner: stored.registrantID, patientID: patientID)
    }

    /// Registers a result for the run's caller, derived from `derivedFrom`, visible to the destinations; returns
    /// its image ID and stored digest. Registering the same result again returns the same ID.
    /// The bytes are not hashed here: the registry hashes them as it stores them and answers with the digest (the
    /// link to it is in-process, or mTLS, which protects them on the way).
    func register(_ built: BuiltResult, run: PreparedRun, derivedFrom: [String]) async throws -> Registered {
        let bytes = built.bytes
        let header = Atrium_V1_RegisterForHeader.with {
            $0.registrant = run.caller.message
            $0.shareWith = run.destinations
            $0.header = .with {
                $0.format = .dicomPart10
                $0.sizeBytes = UInt64(bytes.count)
                $0.derivedFromImageIds = derivedFrom
                $0.comment = "Atrium processing: \(run.plan.summary)"
            }
        }
        do {
            let response = try await registry.registerFor(
                request: StreamingClientRequest { writer in
                    try await writer.write(.with { $0.header = header })
                    var offset = 0
                    while offset < bytes.count {
                        let end = min(offset + (1 << 20), bytes.count)
                        try await writer.write(.with { $0.chunk = .with { $0.offset = UInt64(offset); $0.data = Data(bytes[offset..<end]) } })
                        offset = end
                    }
                },
                options: .internalCall
            )
            return Registered(imageID: response.imageID, sha256: response.digest.sha256)
        } catch let error as RPCError where [.resourceExhausted, .invalidArgument, .notFound, .alreadyExists].contains(error.code) {
            throw ProcessingError(error.code == .alreadyExists ? .failedPrecondition : error.code, "the result cannot be registered: \(error.message)")
        } catch {
            logger.error("cannot register a result", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(run.caller.requestID)"])
            throw ProcessingError.unavailable("the registry cannot store the result right now; try again")
        }
    }

    /// The usage event of a finished run, or of this instance's part of a split one (`images` of them).
    func meter(_ run: PreparedRun, images: Int, totals: RunTotals) throws {
        try usage.add(
            .with {
                $0.eventID = "processing:\(run.caller.subscriberID):\(run.key)"
                $0.subscriberID = run.caller.subscriberID
                $0.time = .init(date: now())
                $0.processing = .with {
                    $0.images = UInt32(clamping: images)
                    $0.bytesIn = totals.bytesIn
                    $0.cpuSeconds = totals.cpuSeconds
                    $0.operation = run.plan.name
                }
            }
        )
        usagePump.wake()
    }

    /// The inbox entry announcing a run's results.
    func notice(for run: PreparedRun, imageRefs: [Atrium_V1_ImageRef], jobID: String, recipients: [String]) throws -> NoticeRow {
        let entry = Atrium_V1_InboxEntry.with {
            $0.source = "processing"
            $0.kind = "processing.result"
            $0.images = imageRefs
            $0.jobID = jobID
            $0.message = "\(run.caller.subscriberID) sent \(imageRefs.count) result\(imageRefs.count == 1 ? "" : "s") of \(run.plan.summary) on \(run.inputs.count) input\(run.inputs.count == 1 ? "" : "s")"
            $0.createdAt = .init(date: now())
        }
        return NoticeRow(sequence: 0, recipients: recipients, entryKey: "processing:\(run.key)", entry: try entry.serializedBytes())
    }

    /// Writes an audit entry for an access to patient data.
    func record(_ caller: VerifiedCaller, _ method: MethodDescriptor, resource: String, owner: String = "", patientID: String = "", outcome: String = "ok") {
        audit.record(method, caller: caller, resource: resource, owner: owner, patientID: patientID, outcome: outcome, at: now())
    }
}
