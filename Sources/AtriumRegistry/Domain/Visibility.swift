import AtriumAPI
import AtriumRuntime

/// Who may see an image. The registry decides this itself, from the verified caller, for every read.
///
/// Today: the registrant and operators. Share grants and individuals linked to a patient ID arrive with the
/// registry issue (#4); until then they see nothing they did not register.
enum Visibility {
    static func canSee(_ row: ImageRow, caller: VerifiedCaller) -> Bool {
        if caller.kind == .operator { return true }
        return row.registrantID == caller.subscriberID
    }
}
