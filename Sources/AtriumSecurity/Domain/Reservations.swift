import Foundation
import Synchronization
import AtriumRuntime

/// A hold on storage: for one upload in progress, or a lease that many uploads draw on.
struct Reservation: Sendable, Equatable {
    var id: String
    var subscriberID: String
    /// The bytes still held: what was granted, less what draws took.
    var bytes: Int64
    var expiresAt: Date
    /// The bytes granted when the hold was made (what a repeated request must ask for again).
    var granted: Int64

    init(id: String, subscriberID: String, bytes: Int64, expiresAt: Date) {
        self.id = id
        self.subscriberID = subscriberID
        self.bytes = bytes
        self.expiresAt = expiresAt
        self.granted = bytes
    }
}

/// The reservations in force, in memory. Each check-and-hold is atomic, so concurrent uploads of one
/// subscriber cannot together pass its quota. Expired holds stop counting and are dropped as they are met.
final class ReservationBook: Sendable {
    private let entries = Mutex<[String: Reservation]>([:])

    /// Holds `reservation` if `admit` (given the bytes the subscriber already holds) accepts; idempotent by ID.
    func reserve<Result>(_ reservation: Reservation, now: Date, admit: (Int64) throws -> Result) throws -> Result {
        try entries.withLock { entries in
            entries = entries.filter { $0.value.expiresAt > now }
            if let existing = entries[reservation.id] {
                guard existing.subscriberID == reservation.subscriberID, existing.granted == reservation.granted else {
                    throw SecurityError.alreadyExists("reservation '\(reservation.id)' exists with other terms")
                }
                return try admit(Self.held(by: reservation.subscriberID, in: entries) - existing.bytes)
            }
            let result = try admit(Self.held(by: reservation.subscriberID, in: entries))
            entries[reservation.id] = reservation
            return result
        }
    }

    /// The bytes `subscriberID` holds now.
    func held(by subscriberID: String, now: Date) -> Int64 {
        entries.withLock { entries in Self.held(by: subscriberID, in: entries.filter { $0.value.expiresAt > now }) }
    }

    /// The reservation with `id`, expired or not.
    func find(_ id: String) -> Reservation? {
        entries.withLock { $0[id] }
    }

    /// Forgets a reservation.
    func remove(_ id: String) {
        _ = entries.withLock { $0.removeValue(forKey: id) }
    }

    /// Takes `bytes` off a lease's hold; the lease goes when nothing is left (or when it was gone already).
    func draw(_ bytes: Int64, from id: String) {
        entries.withLock { entries in
            guard var lease = entries[id] else { return }
            lease.bytes -= bytes
            entries[id] = lease.bytes > 0 ? lease : nil
        }
    }

    private static func held(by subscriberID: String, in entries: [String: Reservation]) -> Int64 {
        entries.values.reduce(Int64(0)) { $1.subscriberID == subscriberID ? $0 &+ $1.bytes : $0 }
    }
}
