import AtriumAPI
import AtriumCore
import Crypto
import Foundation
import SwiftProtobuf
import AtriumRuntime

/// A validated `ImageFilter` as SQL conditions over `image`.
struct ImageQuery: Sendable {
    var clauses: [String] = []
    var arguments: [String] = []
    /// A short hash of the filter, bound into page tokens so that a token is not reused with another filter.
    let fingerprint: String
    /// Whether the filter names a patient, study or series: few images, found through their own index.
    let selective: Bool
    /// The time grants are judged at (the service's clock).
    let at: Date

    init(_ filter: Atrium_V1_ImageFilter, at: Date) throws {
        self.at = at
        let columns: [(String, String, String)] = [
            (filter.patientID, "patient_id", "filter.patient_id"),
            (filter.registrantID, "registrant_id", "filter.registrant_id"),
            (filter.modality, "modality", "filter.modality"),
            (filter.studyInstanceUid, "study_uid", "filter.study_instance_uid"),
            (filter.seriesInstanceUid, "series_uid", "filter.series_instance_uid"),
            (filter.deviceID, "device_id", "filter.device_id"),
            (filter.bodyPart, "body_part", "filter.body_part"),
        ]
        selective = !filter.patientID.isEmpty || !filter.studyInstanceUid.isEmpty || !filter.seriesInstanceUid.isEmpty
        for (value, column, field) in columns where !value.isEmpty {
            guard value.utf8.count <= 128 else { throw RegistryError.invalidArgument("\(field) is longer than 128 bytes") }
            // With a patient, study or series named, the broad columns are tested row by row (`+column` keeps
            // SQLite from walking their index): without statistics it may otherwise pick the wrong index.
            let broad = ["registrant_id", "modality", "device_id", "body_part"].contains(column)
            clauses.append(selective && broad ? "+\(column) = ?" : "\(column) = ?")
            arguments.append(value)
        }
        if filter.hasAcquired {
            if filter.acquired.hasStart {
                clauses.append("order_time >= ?")
                arguments.append(String(try Self.millis(filter.acquired.start, field: "filter.acquired.start")))
            }
            if filter.acquired.hasEnd {
                clauses.append("order_time < ?")
                arguments.append(String(try Self.millis(filter.acquired.end, field: "filter.acquired.end")))
            }
        }
        let bytes: [UInt8] = (try? filter.serializedBytes()) ?? []
        fingerprint = String(Hex.encode(SHA256.hash(data: bytes)).prefix(12))
    }

    static func millis(_ timestamp: Google_Protobuf_Timestamp, field: String) throws -> Int64 {
        guard (0...253_402_300_799).contains(timestamp.seconds), (0..<1_000_000_000).contains(timestamp.nanos) else {
            throw RegistryError.invalidArgument("\(field) must be between 1970 and 9999")
        }
        return timestamp.seconds * 1000 + Int64(timestamp.nanos / 1_000_000)
    }
}

/// Paging by keyset: a page size of 1 to 1000 (default 100) and an opaque token holding the last key of the
/// previous page (a time and an ID) and the filter's fingerprint. Rows inserted while a client pages appear
/// in a later page or not at all; none is repeated or skipped.
struct KeysetPage: Sendable {
    let size: Int
    /// The last (order time, key) returned, when continuing.
    let after: (time: Int64, key: String)?
    private let scope: String

    init(_ request: Atrium_V1_PageRequest, scope: String) throws {
        guard request.pageSize <= 1000 else { throw RegistryError.invalidArgument("page.page_size must be at most 1000") }
        self.size = request.pageSize == 0 ? 100 : Int(request.pageSize)
        self.scope = scope
        guard !request.pageToken.isEmpty else {
            self.after = nil
            return
        }
        let invalid = RegistryError.invalidArgument("page.page_token was not issued for this request and filter")
        guard let data = Data(base64Encoded: Self.unURL(request.pageToken)), let text = String(data: data, encoding: .utf8) else { throw invalid }
        let parts = text.split(separator: "|", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == scope, let time = Int64(parts[1]), !parts[2].isEmpty else { throw invalid }
        self.after = (time, String(parts[2]))
    }

    /// The token for the page after one that ended at `last`; empty when the page was not full.
    func nextToken(last: (time: Int64, key: String)?, count: Int) -> String {
        guard count == size, let last else { return "" }
        return Data("\(scope)|\(last.time)|\(last.key)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    private static func unURL(_ token: String) -> String {
        let base = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        return base + String(repeating: "=", count: (4 - base.count % 4) % 4)
    }
}
