import AtriumAPI
import AtriumRuntime
import GRPCCore
import Testing

@testable import AtriumGateway

@Suite("Role table and rate limits")
struct PolicyTests {
    @Test("every public method the protos define is in the role table, and the table names nothing else")
    func everyMethodMapped() {
        let public_ = Set(PublicRoutes.methods.map(\.method.fullyQualifiedMethod))
        let unmapped = public_.subtracting(MethodPolicy.methods)
        #expect(unmapped.isEmpty, "unmapped: \(unmapped.sorted())")
        let stale = MethodPolicy.methods.subtracting(public_)
        #expect(stale.isEmpty, "mapped but not public: \(stale.sorted())")
        #expect(public_.count == 73)
    }

    @Test("only enrolment is open, and every operator-only method needs 'admin'")
    func openAndAdmin() {
        let open = PublicRoutes.methods.filter { MethodPolicy.access(for: $0.method) == .open }.map(\.method.fullyQualifiedMethod)
        #expect(open == ["atrium.v1.Account/Enroll"])
        for method in Atrium_V1_SecurityAdmin.Method.descriptors + Atrium_V1_Backup.Method.descriptors {
            #expect(MethodPolicy.access(for: method) == .anyOf([.admin]))
        }
    }

    @Test("refusal messages name the missing role")
    func messages() {
        #expect(MethodAccess.anyOf([.receive]).refusal(roles: [.register]) == "contract lacks role 'receive'")
        #expect(MethodAccess.anyOf([.receive, .print]).refusal(roles: []) == "contract lacks any of the roles 'print', 'receive'")
        #expect(MethodAccess.anyOf([.receive, .print]).refusal(roles: [.print]) == nil)
        #expect(MethodAccess.anySubscriber.refusal(roles: []) == nil)
    }

    @Test("a request bucket admits its burst, then refuses until it refills")
    func requestBucket() {
        // An explicit clock: the figures follow from the rates, however busy the machine is.
        let limiter = RateLimiter()
        let limits = RateLimits(requestsPerSecond: 50, requestBurst: 5, bytesPerSecond: 0, byteBurst: 0)
        let start = ContinuousClock.now
        let admitted = (0..<20).filter { _ in limiter.admit("s", limits: limits, now: start) == nil }.count
        #expect(admitted == 5)
        let retry = limiter.admit("s", limits: limits, now: start)
        #expect(retry.map { abs(($0 - .milliseconds(20)).seconds) < 1e-9 } == true, "one token at 50/s: \(String(describing: retry))")
        // 110 ms later: 5.5 tokens refilled, capped at the burst of 5.
        let later = (0..<20).filter { _ in limiter.admit("s", limits: limits, now: start + .milliseconds(110)) == nil }.count
        #expect(later == 5)
        // 30 ms after that: one and a half tokens.
        #expect((0..<20).filter { _ in limiter.admit("s", limits: limits, now: start + .milliseconds(140)) == nil }.count == 1)
        #expect(limiter.admit("other", limits: limits, now: start) == nil, "buckets are per subscriber")
        #expect(limiter.admit("u", limits: .unlimited) == nil)
    }

    @Test("bytes beyond the bucket make the stream wait at the byte rate, even for a message larger than the burst; new messages are refused while the debt needs more than the maximum wait")
    func byteBucket() {
        let limiter = RateLimiter(maximumWait: .seconds(2))
        let limits = RateLimits(requestsPerSecond: 0, requestBurst: 0, bytesPerSecond: 1000, byteBurst: 1000)
        let start = ContinuousClock.now
        #expect(limiter.take(bytes: 1000, "s", limits: limits, now: start) == .zero)
        #expect(limiter.take(bytes: 500, "s", limits: limits, now: start) == .milliseconds(500))
        let long = limiter.take(bytes: 5000, "s", limits: limits, now: start)
        #expect(long == .milliseconds(5500), "a big message waits; it is not refused")
        #expect(limiter.take(bytes: 1, "s", limits: limits, now: start) == nil, "5.5 s of debt is past the 2 s maximum")
        // 4 s later the debt needs 1.5 s: admitted again, waiting what is left.
        #expect(limiter.take(bytes: 500, "s", limits: limits, now: start + .seconds(4)) == .seconds(2))
    }

    @Test("peer strings give their host", arguments: [("ipv4:127.0.0.1:5000", "127.0.0.1"), ("ipv6:[::1]:5000", "::1"), ("unix:/tmp/x", "unix:/tmp/x")])
    func hosts(peer: String, host: String) {
        #expect(Authenticator.host(of: peer) == host)
    }
}
