import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumStorage
import Crypto
import Foundation
import GRPCCore
import Logging
import SwiftProtobuf
import AtriumBackend

/// Export and restore of the index, for the backup service. Blobs are immutable and content-addressed, so a
/// backup is the database snapshot plus the list of blobs it references; the backup service copies the blobs.
extension RegistryService {
    /// Streams a consistent snapshot of the database, then the blobs it references, then the snapshot's digest.
    func export(_ request: Atrium_V1_ExportRequest, to writer: RPCWriter<Atrium_V1_ExportChunk>) async throws {
        let path = "\(configuration.blobDirectory)/tmp/export-\(Identifier.randomBase32(count: 16)).sqlite"
        defer { unlink(path) }
        let digests: [String]
        do {
            digests = try await offload { try self.store.snapshot(to: path) }
        } catch {
            logger.error("cannot snapshot the index", metadata: [LogKey.error: "\(error)", "backup": "\(request.backupID)"])
            throw RegistryError.storageUnavailable()
        }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        var hasher = SHA256()
        var offset: UInt64 = 0
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
            hasher.update(data: data)
            try await writer.write(.with { $0.database = .with { $0.offset = offset; $0.data = data } })
            offset += UInt64(data.count)
        }
        for start in stride(from: 0, to: digests.count, by: 10_000) {
            try await writer.write(.with { $0.blobs = .with { $0.sha256 = Array(digests[start..<min(start + 10_000, digests.count)]) } })
        }
        let digest = Hex.encode(hasher.finalize())
        try await writer.write(.with { $0.snapshotDigest = .with { $0.sha256 = digest; $0.sizeBytes = offset } })
        logger.notice("exported the index", metadata: ["backup": "\(request.backupID)", "bytes": "\(offset)", "blobs": "\(digests.count)"])
    }

    /// Replaces the index with a snapshot made by ``export(_:to:)``, once its digest, its integrity and the
    /// presence of every blob it references are checked; otherwise nothing changes.
    func restore(_ next: () async throws -> Atrium_V1_RestoreChunk?) async throws -> Atrium_V1_RestoreResponse {
        guard let first = try await next(), case .header(let header)? = first.part else {
            throw RegistryError.invalidArgument("the first message of Restore must be a header")
        }
        guard Hex.isSHA256(header.snapshotDigest.sha256) else {
            throw RegistryError.invalidArgument("header.snapshot_digest.sha256 must be 64 lower-case hex characters")
        }
        let path = "\(configuration.blobDirectory)/tmp/restore-\(Identifier.randomBase32(count: 16)).sqlite"
        defer { unlink(path) }
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw RegistryError.storageUnavailable()
        }
        var hasher = SHA256()
        var received: UInt64 = 0
        do {
            defer { try? handle.close() }
            while let message = try await next() {
                guard case .database(let chunk)? = message.part else { throw RegistryError.invalidArgument("only database chunks may follow the header") }
                guard chunk.offset == received else {
                    throw RegistryError.invalidArgument("chunk offset \(chunk.offset) does not follow the \(received) bytes received")
                }
                // The snapshot streams to disk; the bound only stops a runaway stream (an index of millions of
                // images with their thumbnails is a few GiB).
                guard received + UInt64(chunk.data.count) <= Self.snapshotLimit else {
                    throw RegistryError.invalidArgument("the snapshot exceeds \(Self.snapshotLimit >> 30) GiB")
                }
                hasher.update(data: chunk.data)
                try handle.write(contentsOf: chunk.data)
                received += UInt64(chunk.data.count)
            }
        }
        let digest = Hex.encode(hasher.finalize())
        guard digest == header.snapshotDigest.sha256, header.snapshotDigest.sizeBytes == 0 || header.snapshotDigest.sizeBytes == received else {
            throw RegistryError.invalidArgument("the snapshot does not match header.snapshot_digest (received \(received) bytes, sha256 \(digest))")
        }
        let blobs = self.blobs
        let outcome: Result<Int, RegistryStore.MissingBlobs>
        do {
            outcome = try await offload { try self.store.restore(from: path) { try blobs.contains($0) } }
        } catch {
            logger.warning("refused a snapshot", metadata: [LogKey.error: "\(error)", "backup": "\(header.backupID)"])
            throw RegistryError.invalidArgument("the snapshot is not a readable registry database")
        }
        switch outcome {
        case .success(let count):
            logger.notice("restored the index", metadata: ["backup": "\(header.backupID)", "records": "\(count)"])
            settlements.wake()
            return .with { $0.recordCount = UInt64(count) }
        case .failure(let missing):
            throw RPCError(
                code: .failedPrecondition,
                message: "the snapshot references \(missing.digests.count) blob(s) not in the blob store, e.g. \(missing.digests[0]); restore the blobs first"
            )
        }
    }

    static let snapshotLimit: UInt64 = 256 << 30
}
