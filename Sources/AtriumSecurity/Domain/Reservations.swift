import Foundation
import Synchronization

/// A hold on storage for an upload in progress.
struct Reservation: Sendable, Equatable {
    var id: String
    var subscriberID: String
    var bytes: Int64
    var expiresAt: Date
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
                guard existing.subscriberID == reservation.subscriberID, existing.bytes == reservation.bytes else {
                    throw SecurityError.alreadyExists("reservation '\(reservation.id)' exists with other terms")
                }
                return try admit(Self.held(by: reservation.subscriberID, in: entries) - reservation.bytes)
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

    private static func held(by subscriberID: String, in entries: [String: Reservation]) -> Int64 {
        entries.values.reduce(Int64(0)) { $1.subscriberID == subscriberID ? $0 &+ $1.bytes : $0 }
    }
}
