import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumGateway
import AtriumRuntime
import AtriumTesting
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import SwiftProtobuf
import Testing
import AtriumTransport
import AtriumAssembly

/// Calls `method` through the gateway with one empty message and `metadata`; returns the status (`.ok` as nil).
func rawCall(
    _ client: GRPCClient<HTTP2ClientTransport.Posix>,
    _ method: MethodDescriptor,
    metadata: Metadata
) async -> RPCError.Code? {
    var options = CallOptions.defaults
    options.timeout = .seconds(10)
    let request = StreamingClientRequest<[UInt8]>(metadata: metadata) { writer in try await writer.write([]) }
    do {
        try await client.bidirectionalStreaming(
            request: request,
            descriptor: method,
            serializer: RawBytesCoder(),
            deserializer: RawBytesCoder(),
            options: options
        ) { response in
            for try await _ in response.messages {}
        }
        return nil
    } catch {
        return code(of: error) ?? .unknown
    }
}

extension IntegrationTests {
    @Suite("Contract enforcement at the gateway", .serialized)
    struct AuthorizationMatrixTests {
        /// Every kind of subscriber × every public RPC. The expected code of each cell comes from the role table:
        /// a role the contract lacks is PERMISSION_DENIED; otherwise the call must reach its backend and get the
        /// same answer the backend gives the operator (who holds every role) for the same empty request. No
        /// credential or an unknown one is UNAUTHENTICATED, a suspended subscriber is PERMISSION_DENIED, and
        /// enrolment is open to all.
        @Test("every kind of subscriber × every public RPC gets the status its contract dictates")
        func matrix() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            var callers: [(name: String, roles: Set<Atrium_V1_Role>, key: String)] = [("operator", Set(Atrium_V1_SubscriberKind.operator.defaultRoles), mesh.operatorKey)]
            for kind in [Atrium_V1_SubscriberKind.hospital, .individual, .vendor, .printer] {
                let (_, key) = try await mesh.createSubscriber(name: "A \(kind.name)", kind: kind, patientIDs: kind == .individual ? ["PAT-1"] : [])
                callers.append((kind.name, Set(kind.defaultRoles), key))
            }
            let (suspendedID, suspendedKey) = try await mesh.createSubscriber(name: "Suspended", kind: .hospital)
            try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                _ = try await atrium.admin.suspendSubscriber(.with { $0.subscriberID = suspendedID }, metadata: atrium.metadata)
            }
            let unknownKey = "atr_aaaaaaaaaaaa_" + String(repeating: "b", count: 32)
            try await ClientFactory.withClient(to: mesh.mesh.gatewayAddress, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem")) { client in
                var cells = 0
                for (method, _) in PublicRoutes.methods {
                    let access = try #require(MethodPolicy.access(for: method))
                    let baseline = await rawCall(client, method, metadata: ["authorization": "Bearer \(mesh.operatorKey)"])
                    #expect(baseline != .permissionDenied && baseline != .unauthenticated, "\(method): the operator was refused (\(String(describing: baseline)))")
                    for caller in callers {
                        let expected: RPCError.Code? = access.refusal(roles: caller.roles) == nil ? baseline : .permissionDenied
                        let actual = await rawCall(client, method, metadata: ["authorization": "Bearer \(caller.key)"])
                        #expect(actual == expected, "\(caller.name) → \(method)")
                        cells += 1
                    }
                    let anonymous: RPCError.Code? = access == .open ? baseline : .unauthenticated
                    #expect(await rawCall(client, method, metadata: [:]) == anonymous, "no credential → \(method)")
                    #expect(await rawCall(client, method, metadata: ["x-api-key": .string(unknownKey)]) == anonymous, "unknown key → \(method)")
                    let suspended: RPCError.Code? = access == .open ? baseline : .permissionDenied
                    #expect(await rawCall(client, method, metadata: ["authorization": "Bearer \(suspendedKey)"]) == suspended, "suspended → \(method)")
                }
                #expect(cells == 73 * 5)
            }
        }

        /// Resource-level cells, written by hand: an image is visible to its registrant and to operators only
        /// (share grants and patient links arrive with the registry issue), and an invisible image is NOT_FOUND,
        /// never PERMISSION_DENIED, so that its existence does not leak.
        @Test("own versus someone else's image, for each kind of subscriber")
        func resources() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let owner = try await mesh.createSubscriber(name: "Owner", kind: .hospital)
            let other = try await mesh.createSubscriber(name: "Other", kind: .hospital)
            let individual = try await mesh.createSubscriber(name: "Patient", kind: .individual, patientIDs: ["PAT-1"])
            let printer = try await mesh.createSubscriber(name: "Printer", kind: .printer)
            let vendor = try await mesh.createSubscriber(name: "Vendor", kind: .vendor)
            let file = "\(mesh.directory.path)/own.dcm"
            try Fixtures.writePartTenFile(at: file, payloadBytes: 10_000)
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { try await $0.registerImage(file: file).imageID }
            let expectations: [(key: String, getImage: RPCError.Code?, fetch: RPCError.Code?)] = [
                (owner.key, nil, nil),
                (mesh.operatorKey, nil, nil),
                (other.key, .notFound, .notFound),
                (individual.key, .notFound, .notFound),
                // A printer fetches only the images of its open print jobs, naming the job; without one the fetch is
                // refused whatever the image (DeliveryTests covers fetches with a job).
                (printer.key, .notFound, .permissionDenied),
                (vendor.key, .permissionDenied, .permissionDenied),
            ]
            for cell in expectations {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: cell.key)) { atrium in
                    let getImage: RPCError.Code?
                    do { _ = try await atrium.image(id: image); getImage = nil } catch { getImage = code(of: error) }
                    #expect(getImage == cell.getImage)
                    let fetch: RPCError.Code?
                    do { try await atrium.fetchImage(id: image) { _ in }; fetch = nil } catch { fetch = code(of: error) }
                    #expect(fetch == cell.fetch)
                }
            }
        }
    }
}
