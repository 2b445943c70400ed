import SwiftProtobuf
import AtriumAPI
import AtriumRuntime
import Foundation
import GRPCCore
import Testing

@testable import AtriumSecurity

@Suite("Authorize decisions")
struct AuthorizationTests {
    private func decide(_ fixture: SecurityFixture, key: String, method: String) throws -> Atrium_V1_AuthorizeResponse {
        try fixture.service.authorize(.with { $0.apiKey = key; $0.method = method; $0.requestID = "req" })
    }

    @Test("a missing role is PERMISSION_DENIED and says which role; a granted one is allowed with the contract")
    func roles() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber(.printer)
        let (_, key) = try fixture.store.createApiKey(subscriberID: id, label: "", expiresAt: nil, now: fixture.now)
        let denied = try decide(fixture, key: key, method: "atrium.v1.Registry/Register")
        #expect(!denied.allowed)
        #expect(denied.code == Int32(Status.Code.permissionDenied.rawValue))
        #expect(denied.message == "contract lacks role 'register'")
        #expect(denied.caller.subscriberID == id, "a role refusal names the caller so that the gateway can cache it")
        let allowed = try decide(fixture, key: key, method: "atrium.v1.Delivery/WatchPrintJobs")
        #expect(allowed.allowed)
        #expect(allowed.caller.roles == [.print])
        #expect(allowed.cacheTtlMs == 5000)
        let unmapped = try decide(fixture, key: key, method: "atrium.v1.RegistryInternal/ResolveImage")
        #expect(!unmapped.allowed && unmapped.code == Int32(Status.Code.permissionDenied.rawValue))
    }

    @Test("unknown, malformed, revoked and expired keys and terminated subscribers are UNAUTHENTICATED and not cacheable")
    func credentials() throws {
        let fixture = try SecurityFixture()
        let id = try fixture.subscriber()
        let (record, key) = try fixture.store.createApiKey(subscriberID: id, label: "", expiresAt: fixture.now.addingTimeInterval(60), now: fixture.now)
        let method = "atrium.v1.Account/WhoAmI"
        #expect(try decide(fixture, key: key, method: method).allowed)
        let unknown = "atr_" + String(record.prefix) + "_" + String(repeating: "a", count: 32)
        for presented in ["nonsense", "atr_short_x", unknown] {
            let refusal = try decide(fixture, key: presented, method: method)
            #expect(!refusal.allowed && refusal.code == Int32(Status.Code.unauthenticated.rawValue) && !refusal.hasCaller)
        }
        fixture.now = fixture.now.addingTimeInterval(61)
        #expect(try decide(fixture, key: key, method: method).message == "the API key has expired")
        let (_, second) = try fixture.store.createApiKey(subscriberID: id, label: "", expiresAt: nil, now: fixture.now)
        _ = try fixture.store.setStatus(id, to: .suspended, now: fixture.now)
        let suspended = try decide(fixture, key: second, method: method)
        #expect(suspended.code == Int32(Status.Code.permissionDenied.rawValue) && suspended.message.contains("suspended"))
        _ = try fixture.store.setStatus(id, to: .terminated, now: fixture.now)
        let terminated = try decide(fixture, key: second, method: method)
        #expect(terminated.code == Int32(Status.Code.unauthenticated.rawValue) && !terminated.hasCaller)
        #expect(throws: SecurityError.self) { try fixture.store.setStatus(id, to: .active, now: fixture.now) }
        #expect(throws: SecurityError.self) { try fixture.store.createApiKey(subscriberID: id, label: "", expiresAt: nil, now: fixture.now) }
    }

    @Test("contracts are validated: admin only for operators, sane rates, non-negative fees with a currency")
    func contractValidation() throws {
        #expect(throws: SecurityError.self) { try Validate.contract(.with { $0.roles = [.admin] }, kind: .hospital) }
        #expect(throws: SecurityError.self) { try Validate.contract(.with { $0.requestsPerSecond = -1 }, kind: .hospital) }
        #expect(throws: SecurityError.self) { try Validate.contract(.with { $0.fees.deliveryFeePerImageMinor = 5 }, kind: .hospital) }
        #expect(throws: SecurityError.self) { try Validate.contract(.with { $0.fees = .with { $0.currency = "EUR"; $0.managementFeeMinor = -1 } }, kind: .hospital) }
        #expect(throws: SecurityError.self) { try Validate.contract(.with { $0.storageWarningPercent = 101 }, kind: .hospital) }
        let defaults = try Validate.contract(Atrium_V1_Contract(), kind: .individual)
        #expect(defaults.roles == [.receive] && defaults.storageWarningPercent == 80)
        #expect(throws: SecurityError.self) { try Validate.patientIDs(["P1"], kind: .hospital) }
    }
}
