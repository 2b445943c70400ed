public import AtriumAPI
import AtriumCore
import Crypto
import SwiftProtobuf
public import Foundation
public import GRPCCore

/// The inputs of a processing request.
public enum ProcessingInputs: Sendable {
    /// Stored images, in this order.
    case images([String])
    /// Every image of a series the caller can see, ordered by slice position, then instance number.
    case series(String)
    /// DICOM Part 10 files sent with the request, in this order.
    case files([String])
}

/// What to process and how: the operation, its inputs, the result type and who else receives the results.
public struct ProcessingRequest: Sendable {
    /// The operation to run, with its parameters.
    public var operation: Atrium_V1_Operation
    /// The images to process: stored images, a series, or files sent with the request.
    public var inputs: ProcessingInputs
    /// The results' pixel type: 32-bit float (the default) or the first input's stored integer type.
    public var outputType: Atrium_V1_OutputType
    /// Subscribers whose inboxes receive the results (each must hold the `receive` role).
    public var destinations: [String]

    /// A request for `operation` on `inputs`; by default the results are 32-bit float, sent to no other subscriber.
    public init(operation: Atrium_V1_Operation, inputs: ProcessingInputs, outputType: Atrium_V1_OutputType = .float32, destinations: [String] = []) {
        self.operation = operation
        self.inputs = inputs
        self.outputType = outputType
        self.destinations = destinations
    }

    var header: Atrium_V1_RunHeader {
        .with {
            $0.operation = operation
            $0.outputType = outputType
            $0.destinationIds = destinations
            switch inputs {
            case .images(let ids): $0.imageIds = .with { $0.imageIds = ids }
            case .series(let uid): $0.seriesInstanceUid = uid
            case .files(let paths): $0.inlineImageCount = UInt32(paths.count)
            }
        }
    }
}

/// One result of a run or job, verified against the digest the server sent.
public struct ProcessingResult: Sendable {
    /// The result's index in its stream, from 0, in input order.
    public var index: Int
    /// The inputs this result was made from, as 0-based indices into the request's inputs.
    public var inputIndices: [Int]
    /// The registered image ID, when the results were registered.
    public var imageID: String
    /// The result's height in pixels.
    public var rows: Int
    /// The result's width in pixels.
    public var columns: Int
    /// Bits per pixel: 32 for float results, else the source's Bits Allocated.
    public var bitsAllocated: Int
    /// The SHA-256 and size of the result's DICOM bytes, as the server sent them (the bytes match).
    public var digest: Atrium_V1_Digest
    /// Where the DICOM object was written, when a directory was given.
    public var path: String?
    /// The DICOM object, when no directory was given.
    public var bytes: Data?
}

/// A whole result stream: what was applied, the results, and what it cost.
public struct ProcessingOutcome: Sendable {
    /// What was applied: the operation with its defaults filled in, the output type, the inputs used.
    public var header: Atrium_V1_RunResultHeader
    /// Every result, in the order the stream sent them.
    public var results: [ProcessingResult]
    /// What the run cost: CPU seconds, wall-clock time and megapixels processed.
    public var summary: Atrium_V1_RunSummary
}

extension AtriumClient {
    /// Runs an operation and waits for its results. With `directory`, each result is written to
    /// `<directory>/<image ID or result-N>.dcm` (through a `.part` file, checked, then renamed); without, the bytes
    /// are kept in memory.
    public func process(_ request: ProcessingRequest, into directory: String? = nil) async throws -> ProcessingOutcome {
        try await processing.run(request: StreamingClientRequest(metadata: metadata) { writer in
            try await Self.send(request, chunkSize: chunkSize, to: writer)
        }) { response in
            try await Self.receive(response.messages, into: directory)
        }
    }

    /// Queues a request as a job and returns it at once.
    public func submitProcessing(_ request: ProcessingRequest) async throws -> Atrium_V1_ProcessingJob {
        try await processing.submit(request: StreamingClientRequest(metadata: metadata) { writer in
            try await Self.send(request, chunkSize: chunkSize, to: writer)
        })
    }

    /// A job's state, queue position, progress and ETA.
    public func processingJob(_ id: String) async throws -> Atrium_V1_ProcessingJob {
        try await processing.getJob(.with { $0.jobID = id }, metadata: metadata)
    }

    /// A finished job's results, written like ``process(_:into:)``'s.
    public func processingResult(jobID: String, into directory: String? = nil) async throws -> ProcessingOutcome {
        try await processing.getJobResult(.with { $0.jobID = jobID }, metadata: metadata) { response in
            try await Self.receive(response.messages, into: directory)
        }
    }

    /// Cancels a queued or running job.
    public func cancelProcessing(_ id: String, reason: String = "") async throws -> Atrium_V1_ProcessingJob {
        try await processing.cancel(.with { $0.jobID = id; $0.reason = reason }, metadata: metadata)
    }

    /// Every job the caller submitted, newest first, optionally only in `states`.
    public func processingJobs(states: [Atrium_V1_ProcessingJob.State] = []) async throws -> [Atrium_V1_ProcessingJob] {
        var jobs: [Atrium_V1_ProcessingJob] = []
        var token = ""
        repeat {
            let page = try await processing.listJobs(.with { $0.states = states; $0.page = .with { $0.pageSize = 1000; $0.pageToken = token } }, metadata: metadata)
            jobs += page.jobs
            token = page.nextPageToken
        } while !token.isEmpty
        return jobs
    }

    /// The header, then each inline file as its header and chunks.
    static func send(_ request: ProcessingRequest, chunkSize: Int, to writer: RPCWriter<Atrium_V1_RunRequest>) async throws {
        try await writer.write(.with { $0.header = request.header })
        guard case .files(let paths) = request.inputs else { return }
        for (index, path) in paths.enumerated() {
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw RPCError(code: .invalidArgument, message: "cannot read '\(path)'")
            }
            defer { try? handle.close() }
            let size = try handle.seekToEnd()
            try handle.seek(toOffset: 0)
            var hasher = SHA256()
            while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty { hasher.update(data: data) }
            try handle.seek(toOffset: 0)
            try await writer.write(.with {
                $0.image = .with {
                    $0.index = UInt32(index)
                    $0.sizeBytes = size
                    $0.sha256 = Hex.encode(hasher.finalize())
                }
            })
            var offset: UInt64 = 0
            while let data = try handle.read(upToCount: chunkSize), !data.isEmpty {
                try await writer.write(.with { $0.chunk = .with { $0.offset = offset; $0.data = data } })
                offset += UInt64(data.count)
            }
        }
    }

    /// Reads a result stream (Run, GetJobResult) made with the raw stubs, verifying each result against its digest.
    public static func receive(_ messages: RPCAsyncSequence<Atrium_V1_RunResponse, any Error>, into directory: String?) async throws -> ProcessingOutcome {
        if let directory { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        var header: Atrium_V1_RunResultHeader?
        var results: [ProcessingResult] = []
        var current: Atrium_V1_ResultImage?
        var buffer = Data()
        for try await message in messages {
            switch message.part {
            case .header(let value):
                header = value
            case .result(let value):
                current = value
                buffer = Data(capacity: Int(min(value.sizeBytes, 1 << 30)))
            case .chunk(let chunk):
                guard current != nil, chunk.offset == UInt64(buffer.count) else {
                    throw RPCError(code: .internalError, message: "the result stream sent a chunk out of order")
                }
                buffer.append(chunk.data)
            case .digest(let digest):
                guard let result = current else { throw RPCError(code: .internalError, message: "the result stream sent a digest without a result") }
                guard Hex.encode(SHA256.hash(data: buffer)) == digest.sha256, UInt64(buffer.count) == digest.sizeBytes else {
                    throw RPCError(code: .dataLoss, message: "result \(result.index) does not match its digest")
                }
                var path: String?
                if let directory {
                    let name = result.imageID.isEmpty ? "result-\(result.index)" : result.imageID
                    let target = "\(directory)/\(name).dcm"
                    try buffer.write(to: URL(fileURLWithPath: target + ".part"), options: .atomic)
                    _ = try? FileManager.default.removeItem(atPath: target)
                    try FileManager.default.moveItem(atPath: target + ".part", toPath: target)
                    path = target
                }
                results.append(
                    ProcessingResult(
                        index: Int(result.index),
                        inputIndices: result.inputIndices.map { Int($0) },
                        imageID: result.imageID,
                        rows: Int(result.rows),
                        columns: Int(result.columns),
                        bitsAllocated: Int(result.bitsAllocated),
                        digest: digest,
                        path: path,
                        bytes: directory == nil ? buffer : nil
                    )
                )
                current = nil
            case .summary(let summary):
                guard let header else { throw RPCError(code: .internalError, message: "the result stream has no header") }
                return ProcessingOutcome(header: header, results: results, summary: summary)
            case nil:
                continue
            }
        }
        throw RPCError(code: .internalError, message: "the result stream ended without a summary")
    }
}
