import AtriumAPI
import AtriumRuntime
import SwiftProtobuf
import Testing

@testable import AtriumDelivery

@Suite("Delivery's visibility cache")
struct VisibilityCacheTests {
    let caller = VerifiedCaller(subscriberID: "sub_a", kind: .hospital, roles: [.receive], patientIDs: [], requestID: "req_1")

    func record(_ id: String) -> Atrium_V1_ImageRecord { .with { $0.imageID = id } }

    @Test("an allowed answer is kept for its lifetime and no longer")
    func expiry() {
        let cache = VisibilityCache(lifetime: .seconds(5))
        let start = ContinuousClock.now
        cache.keep([record("img_1")], for: caller, now: start)
        #expect(cache.records(["img_1", "img_2"], for: caller, now: start + .seconds(4)).keys.sorted() == ["img_1"])
        #expect(cache.records(["img_1"], for: caller, now: start + .seconds(5)).isEmpty)
    }

    @Test("a different request of the same caller hits; a changed contract or another subscriber misses")
    func identity() {
        let cache = VisibilityCache()
        cache.keep([record("img_1")], for: caller)
        var sameCaller = caller
        sameCaller.requestID = "req_2"
        #expect(cache.records(["img_1"], for: sameCaller).count == 1)
        var fewerRoles = caller
        fewerRoles.roles = [.register]
        #expect(cache.records(["img_1"], for: fewerRoles).isEmpty)
        var other = caller
        other.subscriberID = "sub_b"
        #expect(cache.records(["img_1"], for: other).isEmpty)
        var patient = caller
        patient.patientIDs = ["P9"]
        #expect(cache.records(["img_1"], for: patient).isEmpty)
    }

    @Test("a lifetime of zero keeps nothing, and a full cache drops before it grows")
    func bounds() {
        let off = VisibilityCache(lifetime: .zero)
        off.keep([record("img_1")], for: caller)
        #expect(off.records(["img_1"], for: caller).isEmpty)

        let small = VisibilityCache(capacity: 2)
        let start = ContinuousClock.now
        small.keep([record("img_1"), record("img_2")], for: caller, now: start)
        small.keep([record("img_3")], for: caller, now: start)
        #expect(small.records(["img_1", "img_2", "img_3"], for: caller, now: start).keys.sorted() == ["img_3"])
    }
}
