import SwiftProtobuf
import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import Crypto
import Foundation
import GRPCCore

/// Writes results to a `RunResponse` stream, the one shape `Run`, `RunShard` and `GetJobResult` share: a header,
/// then per result its `ResultImage`, its bytes in chunks and its digest.
struct ResultStream: Sendable {
    /// The registry's blob store, where a result carried by reference is read.
    let blobs: BlobStore
    let instanceID: String
    let softwareVersion: String
}

extension ResultStream {
    /// The header of a result stream.
    func header(_ run: PreparedRun, jobID: String, resultCount: Int) -> Atrium_V1_RunResultHeader {
        .with {
            $0.operation = run.plan.applied
            $0.outputType = run.plan.outputType
            $0.inputImageIds = run.inputImageIDs
            $0.inputCount = UInt32(run.inputs.count)
            $0.instanceIds = [instanceID]
            $0.softwareVersion = softwareVersion
            $0.resultCount = UInt32(resultCount)
            $0.jobID = jobID
        }
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
