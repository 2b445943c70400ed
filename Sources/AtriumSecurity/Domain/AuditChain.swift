import AtriumCore
import Crypto
import Foundation

/// The audit log's hash chain: `hash(n) = SHA-256(hash(n-1) ‖ canonical(entry n))`, with 32 zero bytes before
/// the first entry. The canonical form is documented on `atrium.v1.AuditEntry.hash`.
enum AuditChain {
    /// The "previous hash" of the first entry.
    static let genesis = [UInt8](repeating: 0, count: 32)

    /// The canonical bytes of an entry (everything but its hash).
    static func canonical(_ entry: AuditRecord) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128)
        func append(_ value: Int64) {
            withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
        }
        func append(_ text: String) {
            let utf8 = Array(text.utf8)
            withUnsafeBytes(of: UInt32(utf8.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: utf8)
        }
        append(entry.sequence)
        append(entry.timeMilliseconds)
        for field in [
            entry.subscriberID, entry.method, entry.resourceID, entry.resourceOwnerID, entry.patientID, entry.outcome, entry.requestID,
        ] {
            append(field)
        }
        return bytes
    }

    /// The hash of `entry` following a predecessor whose hash is `previous` (raw bytes).
    static func hash(_ entry: AuditRecord, previous: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: previous)
        hasher.update(data: canonical(entry))
        return Array(hasher.finalize())
    }

    /// The raw bytes of a stored hex hash; `nil` when it is not 64 hex digits.
    static func bytes(ofHex text: String) -> [UInt8]? {
        guard text.utf8.count == 64 else { return nil }
        return Hex.decode(text)
    }
}
