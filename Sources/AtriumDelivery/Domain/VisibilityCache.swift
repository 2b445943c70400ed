import AtriumAPI
import AtriumRuntime
import Synchronization

/// The image records delivery was recently allowed to send a caller, kept for `lifetime` (5 s by default, the
/// gateway's authorisation window), so that fetching an image again (a viewer scrolling back, a print job, the
/// JPEG-LS variant, a resumed transfer) does not ask the registry again. Only answers that allow are kept: a new
/// share is seen at once, and a revoked share or a withdrawn record stops fetches within `lifetime`, as a revoked
/// credential stops calls at the gateway. (Strictly: within `lifetime` plus one registry call, since an answer the
/// registry gave just before a revocation may be kept just after it.)
///
/// An answer is kept for the whole visibility identity (subscriber, kind, roles, patient IDs): a changed contract
/// is a different key. At most `capacity` answers are held; past that, expired ones go, and if none has, all do.
final class VisibilityCache: Sendable {
    /// What decides which images a caller may see (not its request ID): subscriber, kind, roles, patient IDs.
    struct Identity: Hashable {
        var subscriberID: String
        var kind: Int
        var roles: [Int]
        var patientIDs: [String]
    }

    private struct Key: Hashable {
        var caller: Identity
        var imageID: String
    }

    private struct Entry {
        var record: Atrium_V1_ImageRecord
        var until: ContinuousClock.Instant
    }

    private let lifetime: Duration
    private let capacity: Int
    private let entries = Mutex<[Key: Entry]>([:])

    init(lifetime: Duration = .seconds(5), capacity: Int = 20_000) {
        self.lifetime = lifetime
        self.capacity = capacity
    }

    /// The visibility identity of `caller`.
    static func identity(of caller: VerifiedCaller) -> Identity {
        Identity(subscriberID: caller.subscriberID, kind: caller.kind.rawValue, roles: caller.roles.map(\.rawValue).sorted(), patientIDs: caller.patientIDs.sorted())
    }

    /// The records of `ids` still fresh for `caller`.
    func records(_ ids: [String], for caller: VerifiedCaller, now: ContinuousClock.Instant = .now) -> [String: Atrium_V1_ImageRecord] {
        guard lifetime > .zero else { return [:] }
        let identity = Self.identity(of: caller)
        return entries.withLock { entries in
            var found: [String: Atrium_V1_ImageRecord] = [:]
            for id in ids {
                if let entry = entries[Key(caller: identity, imageID: id)], entry.until > now { found[id] = entry.record }
            }
            return found
        }
    }

    /// Keeps `records`, which the registry just allowed `caller` to see.
    func keep(_ records: some Sequence<Atrium_V1_ImageRecord>, for caller: VerifiedCaller, now: ContinuousClock.Instant = .now) {
        guard lifetime > .zero else { return }
        let identity = Self.identity(of: caller)
        let until = now + lifetime
        entries.withLock { entries in
            if entries.count >= capacity {
                entries = entries.filter { $0.value.until > now }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            for record in records { entries[Key(caller: identity, imageID: record.imageID)] = Entry(record: record, until: until) }
        }
    }
}
