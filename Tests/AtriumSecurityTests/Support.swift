import AtriumAPI
import AtriumTesting
import Foundation
import Logging
import Synchronization

@testable import AtriumSecurity

/// A security service on a fresh SQLite file, with a clock the test moves.
final class SecurityFixture: Sendable {
    let directory: TemporaryDirectory
    let service: SecurityService
    private let clock: TestClock

    init(now: Date = Date(), enrollmentCA: (certificatePath: String, keyPath: String)? = nil) throws {
        directory = try TemporaryDirectory(prefix: "atrium-security")
        let clock = TestClock(now)
        self.clock = clock
        service = try SecurityService(
            configuration: SecurityConfiguration(databasePath: "\(directory.path)/security.sqlite", enrollmentCA: enrollmentCA),
            logger: Logger(label: "test"),
            now: { clock.now }
        )
    }

    var store: SecurityStore { service.store }
    var databasePath: String { "\(directory.path)/security.sqlite" }

    var now: Date {
        get { clock.now }
        set { clock.now = newValue }
    }

    /// A subscriber with `contract`, created at the current clock time.
    func subscriber(_ kind: Atrium_V1_SubscriberKind = .hospital, contract: Atrium_V1_Contract = Atrium_V1_Contract()) throws -> String {
        try store.createSubscriber(displayName: "Test \(kind)", kind: kind, contract: try Validate.contract(contract, kind: kind), now: now).record.id
    }
}

/// `2026-11-16T00:00:00Z` from "2026-11-16" (UTC midnight), or a full ISO 8601 time.
func utc(_ text: String) -> Date {
    let formatter = ISO8601DateFormatter()
    return formatter.date(from: text.count == 10 ? text + "T00:00:00Z" : text)!
}

/// A clock the test sets.
final class TestClock: Sendable {
    private let value: Mutex<Date>
    init(_ date: Date) { value = Mutex(date) }
    var now: Date {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
