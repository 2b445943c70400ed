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

/// Run preparation: reads a Run or Submit request up to its last input and checks it, so that what reaches the
/// executor is valid. It validates the header, checks the destinations with security, resolves stored inputs
/// through the registry for the caller (visibility) and orders a series, spools inline inputs to the input store,
/// and checks the caller's budget.
struct RunPreparation: Sendable {
    let registry: any Atrium_V1_RegistryInternal.ClientProtocol
    let security: any Atrium_V1_SecurityInternal.ClientProtocol
    /// The registry's blob store (read-only) and this instance's input store.
    let blobs: BlobStore
    let inputs: BlobStore
    /// Where queued jobs' inline inputs are recorded, so that a spooled input a job needs is kept.
    let store: JobStore
    let budget: BudgetGate
    let throughput: ThroughputMeter
    let logger: Logger
}

extension RunPreparation {
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

    // MARK: - Validation

    /// Checks a header from a client: the operation, the source, the destinations' count, and the inputs' form.
    func validate(_ header: Atrium_V1_RunHeader, caller: VerifiedCaller, forJob: Bool) throws(ProcessingError) -> OperationPlan {
        guard header.hasOperation else { throw ProcessingError.invalidArgument("header.operation is required") }
        let plan = try engineStep { () throws(EngineError) in try OperationPlan(header.operation, outputType: header.outputType) }
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
            try engineStep { () throws(EngineError) in try plan.checkInputCount(list.imageIds.count) }
        case .seriesInstanceUid(let uid):
            guard (1...64).contains(uid.utf8.count) else { throw ProcessingError.invalidArgument("series_instance_uid must be 1 to 64 characters") }
        case .inlineImageCount(let count):
            guard (1...10_000).contains(count) else { throw ProcessingError.invalidArgument("inline_image_count must be 1 to 10000") }
            try engineStep { () throws(EngineError) in try plan.checkInputCount(Int(count)) }
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
                let label = input.label(index)
                let reader = try input.open(blobs: blobs, inputs: nil, label: label)
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
}

extension RunInput {
    /// How messages name the input at `index`.
    func label(_ index: Int) -> String {
        imageID.map { "input \(index) (image '\($0)')" } ?? "input \(index)"
    }

    /// Opens the input's bytes: a stored one in the registry's `blobs`, a spooled one in `inputs` (or `blobs`).
    func open(blobs: BlobStore, inputs: BlobStore?, label: String) throws(ProcessingError) -> BlobReader {
        do {
            switch self {
            case .stored: return try blobs.openReader(sha256)
            case .spooled: return try (inputs ?? blobs).openReader(sha256)
            }
        } catch {
            throw ProcessingError.dataLoss("\(label): the stored bytes cannot be read (\(error)); nothing was made from it")
        }
    }

    /// The input's whole object, checked against the size its record gives.
    func read(blobs: BlobStore, inputs: BlobStore, label: String) throws(ProcessingError) -> [UInt8] {
        let reader = try open(blobs: blobs, inputs: inputs, label: label)
        guard reader.size == size else {
            throw ProcessingError.dataLoss("\(label): the stored object has \(reader.size) bytes; its record says \(size)")
        }
        do {
            return try reader.readAll()
        } catch {
            throw ProcessingError.dataLoss("\(label): the stored bytes cannot be read (\(error))")
        }
    }
}
