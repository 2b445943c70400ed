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

/// One input of a run.
enum RunInput: Sendable {
    /// A stored image, resolved for the caller; its bytes are in the registry's blob store.
    case stored(Atrium_V1_ImageRecord)
    /// An inline image, spooled to this instance's input store.
    case spooled(sha256: String, size: UInt64)

    var imageID: String? {
        if case .stored(let record) = self { return record.imageID }
        return nil
    }

    var sha256: String {
        switch self {
        case .stored(let record): record.digest.sha256
        case .spooled(let sha256, _): sha256
        }
    }

    var size: UInt64 {
        switch self {
        case .stored(let record): record.digest.sizeBytes
        case .spooled(_, let size): size
        }
    }

    /// Input pixels in megapixels, when the registry knows the shape; 0 for inline inputs until read.
    var megapixels: Double {
        guard case .stored(let record) = self else { return 0 }
        return Double(record.rows) * Double(record.columns) * Double(max(1, record.frames)) / 1e6
    }
}

/// A validated request with its inputs in the order used, ready to run.
struct PreparedRun: Sendable {
    var caller: VerifiedCaller
    var header: Atrium_V1_RunHeader
    var plan: OperationPlan
    var destinations: [String]
    var inputs: [RunInput]
    /// Whether results are registered (stored inputs, or destinations given).
    var register: Bool
    /// Names the run in usage and inbox keys: the job ID, or the request ID of a Run.
    var key: String
    /// The method the run serves, for the audit entries of the images it reads: `Run`, `Submit` (a job) or
    /// `RunShard` (a part of either on another instance; the request ID links it to the call).
    var method: MethodDescriptor

    /// Identifies what is computed, for the results' UIDs: equal requests make equal results.
    var derivationKey: String {
        // A stored image's ID names immutable bytes (a superseding version gets a new ID); inline ones are named
        // by their digest. Shards of a split batch compute the same key without every input's record.
        let parts = inputs.map { $0.imageID ?? "inline:\($0.sha256)" }
        return ([caller.subscriberID, plan.summary, "\(plan.outputType.rawValue)"] + parts).joined(separator: "|")
    }

    var inputImageIDs: [String] { inputs.compactMap(\.imageID) }

    /// How many results the run makes.
    var resultCount: Int { plan.isSliceWise ? inputs.count : 1 }
}

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

extension ProcessingService {
    // MARK: - Validation

    /// Checks a header from a client: the operation, the source, the destinations' count, and the inputs' form.
    func validate(_ header: Atrium_V1_RunHeader, caller: VerifiedCaller, forJob: Bool) throws(ProcessingError) -> OperationPlan {
        guard header.hasOperation else { throw ProcessingError.invalidArgument("header.operation is required") }
        let plan = try OperationPlan(header.operation, outputType: header.outputType)
        guard header.sourceSubscriberID.isEmpty || header.sourceSubscriberID == caller.subscriberID else {
            throw ProcessingError.permissionDenied("source_subscriber_id must be empty or the caller; processing for '\(header.sourceSubscriberID)' is not allowed")
        }
        guard header.destinationIds.count <= 32 else { throw ProcessingError.invalidArgument("destination_ids names at most 32 subscribers") }
        guard !header.hasShard else { throw ProcessingError.invalidArgument("header.shard is set only by the gateway") }
        guard header.shards.count <= 64 else { throw ProcessingError.invalidArgument("shards names at most 64 ranges") }
        switch header.inputs {
        case .imageIds(let list):
            guard (1...10_000).contains(list.imageIds.count) else { throw ProcessingError.invalidArgument("image_ids must hold 1 to 10000 IDs") }
            guard list.imageIds.allSatisfy({ (1...64).contains($0.utf8.count) }) else {
                throw ProcessingError.invalidArgument("every image ID must be 1 to 64 bytes")
            }
            try plan.checkInputCount(list.imageIds.count)
        case .seriesInstanceUid(let uid):
            guard (1...64).contains(uid.utf8.count) else { throw ProcessingError.invalidArgument("series_instance_uid must be 1 to 64 characters") }
        case .inlineImageCount(let count):
            guard (1...10_000).contains(count) else { throw ProcessingError.invalidArgument("inline_image_count must be 1 to 10000") }
            try plan.checkInputCount(Int(count))
        case nil:
            throw ProcessingError.invalidArgument("the header must set one of image_ids, series_instance_uid or inline_image_count")
        }
        return plan
    }

    /// The destinations, de-duplicated in order. Each must be an active subscriber whose contract holds the
    /// `receive` role: NOT_FOUND for one that does not exist, FAILED_PRECONDITION for one that may not receive.
    func checkDestinations(_ ids: [String], caller: VerifiedCaller) async throws -> [String] {
        var seen: Set<String> = []
        let destinations = ids.filter { seen.insert($0).inserted }
        guard !destinations.isEmpty else { return [] }
        for id in destinations where !(1...64).contains(id.utf8.count) {
            throw ProcessingError.invalidArgument("destination ID '\(id.prefix(64))' must be 1 to 64 bytes")
        }
        let response: Atrium_V1_LookupSubscribersResponse
        do {
            response = try await security.lookupSubscribers(.with { $0.subscriberIds = destinations }, options: .internalCall)
        } catch {
            logger.error("cannot look up destinations", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw ProcessingError.unavailable("the destinations cannot be checked right now; nothing was run, try again")
        }
        for id in destinations {
            guard let subscriber = response.subscribers.first(where: { $0.subscriberID == id }), subscriber.status == .active else {
                throw ProcessingError.notFound("destination '\(id)' is not an active subscriber")
            }
            guard subscriber.contract.roles.contains(.receive) else {
                throw ProcessingError.failedPrecondition("destination '\(id)' may not receive results: its contract lacks the receive role")
            }
        }
        return destinations
    }

    /// Refuses a run that would take the caller past its budget cap (RESOURCE_EXHAUSTED).
    func checkBudget(_ inputs: [RunInput], caller: VerifiedCaller) async throws {
        try await budget.check(
            .with {
                $0.processing = .with {
                    $0.imageCount = UInt32(clamping: inputs.count)
                    $0.totalBytes = inputs.reduce(0) { $0 + $1.size }
                    $0.estimatedCpuSeconds = inputs.reduce(0) { $0 + $1.megapixels } / max(throughput.perWorker ?? 50, 1)
                }
            },
            for: caller.subscriberID,
            requestID: caller.requestID
        )
    }

    // MARK: - Inputs

    /// The stored inputs a header names, resolved for the caller (NOT_FOUND names the first that is missing),
    /// in the order used: as given for `image_ids`; for a series, by slice position, then instance number.
    func resolveStored(_ header: Atrium_V1_RunHeader, plan: OperationPlan, caller: VerifiedCaller) async throws -> [RunInput] {
        switch header.inputs {
        case .imageIds(let list):
            var records: [Atrium_V1_ImageRecord] = []
            for start in stride(from: 0, to: list.imageIds.count, by: 1000) {
                let window = Array(list.imageIds[start..<min(start + 1000, list.imageIds.count)])
                let response = try await resolve(.with { $0.caller = caller.message; $0.imageIds = window }, caller: caller)
                if let missing = response.missing.first {
                    throw ProcessingError.notFound("input image '\(missing.id)' not found")
                }
                let byID = Dictionary(response.records.map { ($0.imageID, $0) }, uniquingKeysWith: { first, _ in first })
                for id in window {
                    guard let record = byID[id] else { throw ProcessingError.notFound("input image '\(id)' not found") }
                    records.append(record)
                }
            }
            return records.map(RunInput.stored)
        case .seriesInstanceUid(let uid):
            var records: [Atrium_V1_ImageRecord] = []
            var token = ""
            repeat {
                let response = try await resolve(
                    .with {
                        $0.caller = caller.message
                        $0.seriesInstanceUid = uid
                        $0.page = .with { $0.pageSize = 1000; $0.pageToken = token }
                    },
                    caller: caller
                )
                records += response.records
                token = response.nextPageToken
                guard records.count <= 10_000 else {
                    throw ProcessingError.invalidArgument("series '\(uid)' has more than 10000 images; name the images with image_ids instead")
                }
            } while !token.isEmpty
            guard !records.isEmpty else { throw ProcessingError.notFound("series '\(uid)' not found") }
            try plan.checkInputCount(records.count)
            return try await orderSeries(records.map(RunInput.stored))
        default:
            return []
        }
    }

    private func resolve(_ request: Atrium_V1_ResolveImagesRequest, caller: VerifiedCaller) async throws -> Atrium_V1_ResolveImagesResponse {
        do {
            return try await registry.resolveImages(request, options: .internalCall)
        } catch let error as RPCError where error.code == .invalidArgument || error.code == .notFound {
            throw ProcessingError(error.code, error.message)
        } catch {
            logger.error("cannot resolve inputs", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(caller.requestID)"])
            throw ProcessingError.unavailable("the registry cannot resolve the inputs right now; try again")
        }
    }

    /// Orders a series by its slices' geometry (ARCHITECTURE.md §6), reading only each object's header.
    func orderSeries(_ inputs: [RunInput]) async throws -> [RunInput] {
        let blobs = self.blobs
        let geometry: [SliceGeometry] = try await offload {
            try inputs.enumerated().map { index, input in
                let label = Self.label(index, input)
                let reader = try Self.open(input, blobs: blobs, inputs: nil, label: label)
                let prefix = [UInt8](try reader.read(offset: 0, length: Int(min(reader.size, 256 << 10))))
                let info: SourceInfo
                if prefix.count == Int(reader.size) {
                    info = try SourceDecoder.info(of: SourceDecoder.parse(prefix, label: label), label: label)
                } else {
                    info = try SourceDecoder.header(prefix, totalLength: Int(reader.size), label: label)
                }
                return info.geometry
            }
        }
        let order: [Int]
        do {
            order = try SeriesOrder.order(geometry)
        } catch {
            throw ProcessingError.invalidArgument("the series cannot be stacked: \(error.detail)")
        }
        return order.map { inputs[$0] }
    }

    /// Reads the inline images that follow a header into the input store: each introduced by its
    /// `InlineImageHeader`, in index order, then its chunks with offsets from 0.
    func spoolInline(count: Int, from messages: inout RPCAsyncSequence<Atrium_V1_RunRequest, any Error>.AsyncIterator) async throws -> [RunInput] {
        var spooled: [RunInput] = []
        var pending = try await messages.next()
        for index in 0..<count {
            guard let message = pending, case .image(let image)? = message.part else {
                throw ProcessingError.invalidArgument("inline image \(index) of \(count) is missing: expected its InlineImageHeader")
            }
            guard image.index == index else {
                throw ProcessingError.invalidArgument("inline images must come in index order: expected \(index), got \(image.index)")
            }
            guard !image.hasRaw else {
                throw ProcessingError.invalidArgument("inline image \(index): raw pixels are not accepted here; send a DICOM Part 10 object")
            }
            guard image.sizeBytes > 0, image.sizeBytes <= 1 << 30 else {
                throw ProcessingError.invalidArgument("inline image \(index): size_bytes must be 1 to 1073741824")
            }
            guard image.sha256.isEmpty || Hex.isSHA256(image.sha256) else {
                throw ProcessingError.invalidArgument("inline image \(index): sha256 must be 64 lower-case hex digits")
            }
            let writer = try inputs.makeWriter()
            do {
                pending = try await messages.next()
                let commit = try await receive(image, index: index, into: writer, pending: &pending, from: &messages)
                spooled.append(.spooled(sha256: commit.sha256, size: commit.size))
            } catch {
                writer.abort()
                throw error
            }
        }
        if let extra = pending {
            throw ProcessingError.invalidArgument("unexpected message after the last inline image: \(extra.part.map { "\($0)".prefix(40) } ?? "empty")")
        }
        return spooled
    }

    /// Writes one inline image's chunks (the first is in `pending`) and commits it; `pending` is left holding the
    /// message after its last chunk.
    private func receive(
        _ image: Atrium_V1_InlineImageHeader,
        index: Int,
        into writer: BlobWriter,
        pending: inout Atrium_V1_RunRequest?,
        from messages: inout RPCAsyncSequence<Atrium_V1_RunRequest, any Error>.AsyncIterator
    ) async throws -> BlobCommit {
        var received: UInt64 = 0
        while let message = pending {
            guard case .chunk(let chunk) = message.part else { break }
            guard chunk.offset == received else {
                throw ProcessingError.invalidArgument("inline image \(index): chunk at offset \(chunk.offset), expected \(received)")
            }
            received += UInt64(chunk.data.count)
            guard received <= image.sizeBytes else {
                throw ProcessingError.invalidArgument("inline image \(index) is longer than its size_bytes \(image.sizeBytes)")
            }
            try writer.write(chunk.data)
            pending = try await messages.next()
        }
        guard received == image.sizeBytes else {
            throw ProcessingError.invalidArgument("inline image \(index) has \(received) bytes; size_bytes says \(image.sizeBytes)")
        }
        let result: Result<BlobCommit, StorageError>
        do {
            result = .success(try await writer.commitOffloaded(expectingSHA256: image.sha256.isEmpty ? nil : image.sha256, size: image.sizeBytes))
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let commit): return commit
        case .failure(let error) where error.isDigestMismatch || error.isSizeMismatch:
            throw ProcessingError.invalidArgument("inline image \(index) does not match its header: \(error.detail)")
        case .failure(let error): throw error
        }
    }

    /// Removes spooled inline inputs no queued job needs.
    func discardSpooled(_ inputs: [RunInput]) async {
        for case .spooled(let sha256, _) in inputs {
            if (try? await store.inputInUse(sha256)) == false { try? self.inputs.remove(sha256) }
        }
    }

    static func label(_ index: Int, _ input: RunInput) -> String {
        input.imageID.map { "input \(index) (image '\($0)')" } ?? "input \(index)"
    }

    static func open(_ input: RunInput, blobs: BlobStore, inputs: BlobStore?, label: String) throws(ProcessingError) -> BlobReader {
        do {
            switch input {
            case .stored: return try blobs.openReader(input.sha256)
            case .spooled: return try (inputs ?? blobs).openReader(input.sha256)
            }
        } catch {
            throw ProcessingError.dataLoss("\(label): the stored bytes cannot be read (\(error)); nothing was made from it")
        }
    }

    static func read(_ input: RunInput, blobs: BlobStore, inputs: BlobStore, label: String) throws(ProcessingError) -> [UInt8] {
        let reader = try open(input, blobs: blobs, inputs: inputs, label: label)
        guard reader.size == input.size else {
            throw ProcessingError.dataLoss("\(label): the stored object has \(reader.size) bytes; its record says \(input.size)")
        }
        do {
            return try reader.readAll()
        } catch {
            throw ProcessingError.dataLoss("\(label): the stored bytes cannot be read (\(error))")
        }
    }

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
        let builder = ResultBuilder(plan: run.plan, derivationKey: run.derivationKey, softwareVersion: configuration.softwareVersion)
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
                        let label = Self.label(index, input)
                        let (built, megapixels, cpu, patientID) = try await offload {
                            let start = threadCPUSeconds()
                            let source = try SourceDecoder.decode(try Self.read(input, blobs: blobs, inputs: inputs, label: label), label: label)
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
                let first = try SourceDecoder.decode(try Self.read(a, blobs: blobs, inputs: inputs, label: Self.label(0, a)), label: Self.label(0, a))
                let second = try SourceDecoder.decode(try Self.read(b, blobs: blobs, inputs: inputs, label: Self.label(1, b)), label: Self.label(1, b))
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
                let label = Self.label(index, input)
                let (megapixels, cpu) = try await offload {
                    let start = threadCPUSeconds()
                    let source = try SourceDecoder.decode(try Self.read(input, blobs: blobs, inputs: inputs, label: label), label: label)
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
}
