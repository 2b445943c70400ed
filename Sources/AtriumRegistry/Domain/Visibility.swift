import AtriumAPI
import AtriumRuntime
import Foundation
import GRDB

/// Who may see an image: its registrant; operators; individual subscribers linked to its patient ID; and
/// receivers of an active share grant from its registrant (for its patient, or for its study). The registry
/// decides this itself, from the verified caller and its own grant table, for every read and every listing.
struct Audience: Sendable {
    let subscriberID: String
    let isOperator: Bool
    let patientIDs: [String]
    /// Whether any grant to the caller is active (the grant clause is left out otherwise).
    let hasGrants: Bool

    init(caller: VerifiedCaller, hasGrants: Bool) {
        self.subscriberID = caller.subscriberID
        self.isOperator = caller.kind == .operator
        self.patientIDs = caller.kind == .individual ? caller.patientIDs : []
        self.hasGrants = hasGrants
    }

    /// Whether `row` is visible without looking at grants: own images, operators, linked patients.
    func seesDirectly(_ row: ImageRow) -> Bool {
        isOperator || row.registrantID == subscriberID || row.patientID.map(patientIDs.contains) == true
    }

    /// The same rule as an SQL condition over `image` at `now`, with its arguments; `nil` for operators. Grants
    /// are matched in SQL against the grant tables, so their number never grows the statement.
    ///
    /// With `selectiveFilter` (the query names a patient, study or series), the registrant test is written so
    /// that SQLite cannot use the registrant index for it (`+column`): otherwise, without statistics, the
    /// planner may walk every image of a large registrant in order instead of the few of one patient.
    func sql(at now: Date, selectiveFilter: Bool = false) -> (String, [any DatabaseValueConvertible & Sendable])? {
        if isOperator { return nil }
        var clauses = [selectiveFilter ? "+image.registrant_id = ?" : "image.registrant_id = ?"]
        var arguments: [any DatabaseValueConvertible & Sendable] = [subscriberID]
        if !patientIDs.isEmpty {
            clauses.append("image.patient_id IN (\(Self.placeholders(patientIDs.count)))")
            arguments += patientIDs as [any DatabaseValueConvertible & Sendable]
        }
        if hasGrants {
            clauses.append(Self.grantClause)
            arguments += [subscriberID, now]
        }
        return ("(" + clauses.joined(separator: " OR ") + ")", arguments)
    }

    /// An active grant to the receiver (first argument) at a time (second) covers the row of `image`.
    static let grantClause = """
                EXISTS (SELECT 1 FROM share_grant AS g WHERE g.receiver_id = ? AND g.grantor_id = image.registrant_id
                  AND g.revoked_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > ?)
                  AND (g.patient_id = image.patient_id
                    OR EXISTS (SELECT 1 FROM share_grant_study AS s WHERE s.grant_id = g.id AND s.study_uid = image.study_uid)
                    OR EXISTS (SELECT 1 FROM share_grant_image AS m WHERE m.grant_id = g.id AND m.image_id = image.id)))
        """

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }
}
