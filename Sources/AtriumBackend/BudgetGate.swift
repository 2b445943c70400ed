import SwiftProtobuf
public import AtriumAPI
import AtriumCore
import AtriumRuntime
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
import Synchronization

/// Refuses work that would take a subscriber past its contract's budget cap, by asking security's `CheckBudget`
/// (RESOURCE_EXHAUSTED with security's message). A subscriber whose contract has no cap is not asked again for
/// 5 s, the same window as the gateway's authorization cache. When security cannot answer, the work is refused
/// with UNAVAILABLE rather than done unpriced.
public final class BudgetGate: Sendable {
    private let security: any Atrium_V1_SecurityInternal.ClientProtocol
    private let logger: Logger
    /// Subscribers known to have no cap, until when.
    private let uncapped = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(security: any Atrium_V1_SecurityInternal.ClientProtocol, logger: Logger) {
        self.security = security
        self.logger = logger
    }

    /// Checks `request` (a delivery or a processing quote) for `subscriberID`.
    public func check(_ request: Atrium_V1_QuoteRequest, for subscriberID: String, requestID: String) async throws {
        let now = ContinuousClock.now
        if let until = uncapped.withLock({ $0[subscriberID] }), until > now { return }
        do {
            let quote = try await security.checkBudget(
                .with {
                    $0.subscriberID = subscriberID
                    $0.request = request
                },
                options: .internalCall
            )
            if !quote.budgetCapped {
                uncapped.withLock { entries in
                    if entries.count > 10_000 { entries.removeAll() }
                    entries[subscriberID] = now + .seconds(5)
                }
            }
        } catch let error as RPCError where error.code == .resourceExhausted {
            throw RPCError(code: .resourceExhausted, message: error.message)
        } catch {
            logger.error("cannot check the budget", metadata: [LogKey.error: "\(error)", LogKey.requestID: "\(requestID)"])
            throw RPCError(code: .unavailable, message: "the budget cannot be checked right now; try again")
        }
    }
}
