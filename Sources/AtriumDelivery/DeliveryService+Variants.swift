import AtriumAPI
import AtriumCore
import AtriumDICOM
import AtriumStorage
import Crypto
import Foundation
import GRPCCore
import Logging
import AtriumRuntime
import SwiftProtobuf
import AtriumBackend

/// What one image is delivered as: which blob of which store, in which syntax.
struct Deliverable: Sendable {
    /// The registry's blob store (the original) or delivery's own (a variant).
    var store: BlobStore
    var sha256: String
    var size: UInt64
    var transferSyntaxUID: String
    var encoding: Atrium_V1_Encoding
    /// Why `encoding` is not the one asked for; empty when it is.
    var note: String
    /// The variant cache entry this came from, if any (forgotten when its bytes turn out damaged).
    var variantKey: VariantKey?
}

/// A variant's key: the stored bytes and the encoding asked for.
struct VariantKey: Hashable, Sendable {
    var sourceSHA256: String
    var encoding: Atrium_V1_Encoding
}

extension Atrium_V1_Encoding {
    /// The transfer syntax UID an encoding produces (`nil` for ORIGINAL, which keeps the stored one).
    var transferSyntaxUID: String? {
        switch self {
        case .explicitLe: TransferSyntax.explicitLittleEndian.uid
        case .deflate: TransferSyntax.deflatedExplicitLittleEndian.uid
        case .jpegLs: TransferSyntax.jpegLSLossless
        case .original, .unspecified, .UNRECOGNIZED: nil
        }
    }

    var transcoderTarget: Transcoder.Target? {
        switch self {
        case .explicitLe: .explicitLittleEndian
        case .deflate: .deflatedExplicitLittleEndian
        case .jpegLs: .jpegLSLossless
        case .original, .unspecified, .UNRECOGNIZED: nil
        }
    }
}

extension DeliveryService {
    /// What to deliver for `record` in `encoding`: the original when asked for, or when it already is in that
    /// syntax; else the cached variant, transcoding it first if needed (once, however many ask at the same time).
    func deliverable(_ record: Atrium_V1_ImageRecord, encoding: Atrium_V1_Encoding, requestID: String) async throws -> Deliverable {
        let original = Deliverable(
            store: blobs, sha256: record.digest.sha256, size: record.digest.sizeBytes, transferSyntaxUID: record.transferSyntaxUid,
            encoding: .original, note: "", variantKey: nil
        )
        guard let wanted = encoding.transferSyntaxUID else { return original }
        if record.transferSyntaxUid == wanted {
            var same = original
            same.encoding = encoding
            return same
        }
        let key = VariantKey(sourceSHA256: record.digest.sha256, encoding: encoding)
        let row = try await transcodes.run(key) { try await variant(key, of: record, requestID: requestID) }
        let fromOriginal = row.sha256 == record.digest.sha256
        return Deliverable(
            store: fromOriginal ? blobs : variants, sha256: row.sha256, size: UInt64(row.sizeBytes), transferSyntaxUID: row.transferSyntaxUID,
            encoding: Atrium_V1_Encoding(rawValue: row.deliveredEncoding) ?? .original, note: row.note, variantKey: fromOriginal ? nil : key
        )
    }

    /// The cached variant of `key`, else a new one: the original read (and checked against its hash),
    /// transcoded off the request threads, written durably to the variant store, then indexed.
    private func variant(_ key: VariantKey, of record: Atrium_V1_ImageRecord, requestID: String) async throws -> VariantRow {
        let cached: VariantRow?
        do {
            cached = try await store.variant(sourceSHA256: key.sourceSHA256, encoding: key.encoding.rawValue)
        } catch {
            logger.error("cannot read the variant index", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw DeliveryError.storageUnavailable()
        }
        if let cached, cached.sha256 == record.digest.sha256 || (try? variants.contains(cached.sha256)) == true {
            return cached
        }
        let now = self.now()
        var row = VariantRow(
            sourceSHA256: key.sourceSHA256, encoding: key.encoding.rawValue, deliveredEncoding: Atrium_V1_Encoding.original.rawValue,
            sha256: record.digest.sha256, sizeBytes: Int64(record.digest.sizeBytes), transferSyntaxUID: record.transferSyntaxUid,
            note: "", createdAt: now
        )
        if record.digest.sizeBytes > configuration.maxTranscodeBytes {
            row.note = "the stored object (\(record.digest.sizeBytes) bytes) is larger than this server transcodes (\(configuration.maxTranscodeBytes) bytes); delivered as stored"
        } else {
            let source = try readOriginal(record)
            let started = ContinuousClock.now
            let outcome = try await offload { Self.transcode(source, to: key.encoding) }
            switch outcome {
            case .encoded(let bytes, let syntax, let delivered, let note):
                let writer = try variants.makeWriter()
                do {
                    try writer.write(bytes)
                    let commit = try await writer.commitOffloaded()
                    row.sha256 = commit.sha256
                    row.sizeBytes = Int64(commit.size)
                } catch {
                    writer.abort()
                    logger.error("cannot store a variant", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(record.imageID)"])
                    throw DeliveryError.storageUnavailable()
                }
                row.transferSyntaxUID = syntax
                row.deliveredEncoding = delivered.rawValue
                row.note = note
            case .original(let note):
                row.note = note
            }
            logger.info(
                "transcoded",
                metadata: [
                    LogKey.imageID: "\(record.imageID)", "encoding": "\(key.encoding)", "bytes.in": "\(source.count)",
                    "bytes.out": "\(row.sizeBytes)", "ms": "\((ContinuousClock.now - started).wholeMilliseconds)", LogKey.requestID: "\(requestID)",
                ]
            )
        }
        do {
            try await store.save(row)
        } catch {
            logger.error("cannot index a variant", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw DeliveryError.storageUnavailable()
        }
        return row
    }

    /// The outcome of transcoding one object.
    enum TranscodeOutcome: Sendable {
        case encoded(bytes: [UInt8], transferSyntaxUID: String, encoding: Atrium_V1_Encoding, note: String)
        /// Not transcodable here: the original is delivered, with the reason.
        case original(note: String)
    }

    /// Transcodes `source` to `encoding`. JPEG-LS that cannot code the pixels (not 8 or 16 bits a sample)
    /// falls back to explicit VR little endian; pixels that cannot be decoded here fall back to the original.
    static func transcode(_ source: [UInt8], to encoding: Atrium_V1_Encoding) -> TranscodeOutcome {
        guard let target = encoding.transcoderTarget else { return .original(note: "") }
        do {
            let (bytes, syntax) = try Transcoder.transcode(source, to: target)
            return .encoded(bytes: bytes, transferSyntaxUID: syntax, encoding: encoding, note: "")
        } catch let error where encoding == .jpegLs && error.kind == .unsupported {
            let note = "JPEG-LS cannot code these pixels (\(error)); delivered as explicit VR little endian"
            do {
                let (bytes, syntax) = try Transcoder.transcode(source, to: .explicitLittleEndian)
                return .encoded(bytes: bytes, transferSyntaxUID: syntax, encoding: .explicitLe, note: note)
            } catch {
                return .original(note: "the stored object cannot be transcoded (\(error)); delivered as stored")
            }
        } catch {
            return .original(note: "the stored object cannot be transcoded (\(error)); delivered as stored")
        }
    }

    /// The whole original, checked against its record's hash.
    private func readOriginal(_ record: Atrium_V1_ImageRecord) throws -> [UInt8] {
        do {
            let reader = try blobs.openReader(record.digest.sha256)
            guard reader.size == record.digest.sizeBytes else { throw DeliveryError.blobDamaged(record.imageID) }
            let bytes = [UInt8](try reader.read(offset: 0, length: Int(reader.size)))
            guard Hex.encode(SHA256.hash(data: bytes)) == record.digest.sha256 else { throw DeliveryError.blobDamaged(record.imageID) }
            return bytes
        } catch {
            logger.error("cannot read an original to transcode", metadata: [LogKey.error: "\(error)", LogKey.imageID: "\(record.imageID)"])
            throw DeliveryError.blobDamaged(record.imageID)
        }
    }

    /// Drops a variant whose cached bytes are missing or damaged, index row and file, so the next fetch transcodes
    /// it again.
    func forgetVariant(_ delivered: Deliverable) async {
        guard let key = delivered.variantKey else { return }
        logger.warning("dropping a damaged variant", metadata: ["variant.sha256": "\(delivered.sha256)", "encoding": "\(key.encoding)"])
        try? await store.forget(sourceSHA256: key.sourceSHA256, encoding: key.encoding.rawValue)
        try? variants.remove(delivered.sha256)
    }
}

extension DeliveryService {
    /// The typed acquisition conditions of an image the caller may see, with every version, oldest first.
    func acquisitionConditions(
        _ request: Atrium_V1_GetAcquisitionConditionsRequest,
        caller: VerifiedCaller
    ) async throws -> Atrium_V1_GetAcquisitionConditionsResponse {
        guard !request.imageID.isEmpty else { throw DeliveryError.invalidArgument("image_id is required") }
        let record: Atrium_V1_ImageRecord
        do {
            record = try await registry.resolveImage(
                .with { $0.caller = caller.message; $0.imageID = request.imageID; $0.includeConditionsHistory = true },
                options: .internalCall
            )
        } catch let error as RPCError {
            throw error.withoutTransportHeaders
        }
        audit.record(
            Atrium_V1_Delivery.Method.GetAcquisitionConditions.descriptor, caller: caller, resource: record.imageID, owner: record.registrantID,
            patientID: record.patientID, at: now()
        )
        return .with {
            $0.imageID = record.imageID
            $0.modality = record.modality
            $0.deviceID = record.deviceID
            $0.current = record.conditions
            $0.history = record.conditionsHistory
        }
    }
}
