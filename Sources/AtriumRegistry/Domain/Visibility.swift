import AtriumAPI
import AtriumRuntime
import Foundation

/// Who may see an image: its registrant; operators; individual subscribers linked to its patient ID; and
/// receivers of an active share grant from its registrant (for its patient, or for its study). The registry
/// decides this itself, from the verified caller and its own grant table, for every read and every listing.
struct Audience: Sendable {
    /// A grant as it applies to listings: the grantor's images of one patient, or of some studies.
    struct Grant: Sendable {
        var grantorID: String
        var patientID: String?
        var studyUIDs: [String]
    }

    let subscriberID: String
    let isOperator: Bool
    let patientIDs: [String]
    let grants: [Grant]

    init(caller: VerifiedCaller, grants: [Grant]) {
        self.subscriberID = caller.subscriberID
        self.isOperator = caller.kind == .operator
        self.patientIDs = caller.kind == .individual ? caller.patientIDs : []
        self.grants = grants
    }

    func canSee(_ row: ImageRow) -> Bool {
        if isOperator || row.registrantID == subscriberID { return true }
        if let patient = row.patientID, patientIDs.contains(patient) { return true }
        return grants.contains { grant in
            guard grant.grantorID == row.registrantID else { return false }
            if let patient = grant.patientID { return row.patientID == patient }
            return row.studyUID.map(grant.studyUIDs.contains) ?? false
        }
    }

    /// The same rule as an SQL condition over `image`, with its arguments; `nil` for operators.
    var sql: (String, [String])? {
        if isOperator { return nil }
        var clauses = ["registrant_id = ?"]
        var arguments = [subscriberID]
        if !patientIDs.isEmpty {
            clauses.append("patient_id IN (\(Self.placeholders(patientIDs.count)))")
            arguments += patientIDs
        }
        for grant in grants {
            if let patient = grant.patientID {
                clauses.append("(registrant_id = ? AND patient_id = ?)")
                arguments += [grant.grantorID, patient]
            } else if !grant.studyUIDs.isEmpty {
                clauses.append("(registrant_id = ? AND study_uid IN (\(Self.placeholders(grant.studyUIDs.count))))")
                arguments += [grant.grantorID] + grant.studyUIDs
            }
        }
        return ("(" + clauses.joined(separator: " OR ") + ")", arguments)
    }

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }
}
