import AtriumCore
import AtriumRuntime
import GRPCCore
import Testing

@testable import AtriumGateway

@Suite("Gateway forwarding rules")
struct ForwardingTests {
    @Test("grpc-timeout values within the spec become deadlines", arguments: [
        ("2H", Duration.seconds(7200)), ("3M", .seconds(180)), ("10S", .seconds(10)), ("250m", .milliseconds(250)),
        ("99999999u", .microseconds(99_999_999)), ("5n", .nanoseconds(5)), ("99999999H", .seconds(99_999_999 * 3600)),
    ])
    func timeouts(text: String, expected: Duration) {
        #expect(Forwarding.timeout(in: ["grpc-timeout": .string(text)]) == expected)
    }

    @Test("malformed or oversized grpc-timeout values are ignored, never trapped on", arguments: [
        "", "H", "10", "10X", "-5S", "999999999H", "99999999999999999H", "1 S", "١٢S",
    ])
    func badTimeouts(text: String) {
        #expect(Forwarding.timeout(in: ["grpc-timeout": .string(text)]) == nil)
    }

    @Test("credentials, identity, pseudo- and transport headers never travel to the next hop")
    func stripping() {
        let incoming: Metadata = [
            ":status": "200", "content-type": "application/grpc", "te": "trailers", "grpc-status": "0",
            "grpc-timeout": "1S", "authorization": "Bearer atr_x", "x-api-key": "atr_y", "atrium-subscriber": "sub_forged",
            "atrium-roles": "admin", "user-agent": "x", "x-trace": "keep-me", "custom-bin": .binary([1, 2, 3]),
        ]
        let forwarded = incoming.forwardable
        #expect(forwarded.count == 2)
        #expect(Array(forwarded[stringValues: "x-trace"]) == ["keep-me"])
        #expect(Array(forwarded[binaryValues: "custom-bin"]) == [[1, 2, 3]])
    }

    @Test("every public service is routed, to the backend that owns it, and no internal service is")
    func routes() {
        let services = Set(PublicRoutes.methods.map(\.method.service.fullyQualifiedService))
        #expect(services == [
            "atrium.v1.SecurityAdmin", "atrium.v1.Account", "atrium.v1.Registry", "atrium.v1.Delivery",
            "atrium.v1.Processing", "atrium.v1.Catalog", "atrium.v1.Backup",
        ])
        #expect(!services.contains { $0.hasSuffix("Internal") })
        let backends = Dictionary(PublicRoutes.methods.map { ($0.method.service.fullyQualifiedService, $0.backend.rawValue) }) { a, _ in a }
        #expect(backends["atrium.v1.Account"] == "security")
        #expect(backends["atrium.v1.Registry"] == "registry")
        #expect(backends["atrium.v1.Processing"] == "processing")
    }
}
