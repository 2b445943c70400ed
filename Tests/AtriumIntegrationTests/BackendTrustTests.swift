import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Crypto
import Foundation
import GRPCCore
import SwiftProtobuf
import GRPCNIOTransportHTTP2
import Testing
import AtriumTransport
import AtriumAssembly

extension IntegrationTests {
    /// Backends listen with mTLS and believe identity metadata only from the gateway's certificate.
    @Suite("Calls straight to a backend", .serialized)
    struct BackendTrustTests {
        /// Calls Registry.GetImage on the registry directly, presenting `security`, with forged identity metadata.
        private func getImageDirectly(mesh: TestMesh, security: ClientSecurity) async throws {
            let address = mesh.mesh.address(of: .init(.registry))
            try await ClientFactory.withClient(to: address, security: security) { client in
                let forged = VerifiedCaller(subscriberID: "sub_forged", kind: .operator, roles: [.admin, .receive], requestID: "req_forged")
                var options = CallOptions.defaults
                options.timeout = .seconds(5)
                _ = try await Atrium_V1_Registry.Client(wrapping: client).getImage(
                    request: ClientRequest(message: .with { $0.imageID = "img_x" }, metadata: forged.metadata),
                    options: options
                )
            }
        }

        @Test("a client without a certificate fails the TLS handshake")
        func noCertificate() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            await #expect {
                try await getImageDirectly(mesh: mesh, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem"))
            } throws: { code(of: $0) == .unavailable || code(of: $0) == .deadlineExceeded }
        }

        @Test("a certificate from another CA fails the TLS handshake")
        func foreignCA() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let foreign = try TemporaryDirectory(prefix: "foreign-pki")
            try DevelopmentPKI.ensure(directory: foreign.path)
            var files = TLSFiles.service(.gateway, in: foreign.path)
            files.caPath = "\(mesh.pkiDirectory)/ca.pem"
            await #expect {
                try await getImageDirectly(mesh: mesh, security: .mutualTLS(files))
            } throws: { code(of: $0) == .unavailable || code(of: $0) == .deadlineExceeded }
        }

        @Test("an Atrium certificate that is not a service's gets UNAUTHENTICATED")
        func subscriberCertificate() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let ca = try CertificateAuthority(
                certificatePEM: String(contentsOfFile: "\(mesh.pkiDirectory)/ca.pem", encoding: .utf8),
                keyPEM: String(contentsOfFile: "\(mesh.pkiDirectory)/ca.key", encoding: .utf8)
            )
            let issued = try ca.issueFiles(name: "subscriber", in: mesh.directory.path, uris: ["atrium://subscriber/sub_someone"])
            let files = TLSFiles(caPath: "\(mesh.pkiDirectory)/ca.pem", certificatePath: issued.certificatePath, keyPath: issued.keyPath)
            await #expect {
                try await getImageDirectly(mesh: mesh, security: .mutualTLS(files))
            } throws: { code(of: $0) == .unauthenticated }
        }

        @Test("the gateway's certificate cannot call the registry's internal service; only its users can")
        func internalAllowList() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            for (identity, allowed) in [(ServiceName.gateway, false), (.catalog, false), (.delivery, true)] {
                try await ClientFactory.withClient(to: mesh.mesh.address(of: .init(.registry)), security: .mutualTLS(.service(identity, in: mesh.pkiDirectory))) { client in
                    let request = Atrium_V1_ResolveImageRequest.with {
                        $0.imageID = "img_x"
                        $0.caller = .with { $0.subscriberID = "sub_x"; $0.kind = .operator }
                    }
                    await #expect {
                        _ = try await Atrium_V1_RegistryInternal.Client(wrapping: client).resolveImage(request)
                    } throws: { code(of: $0) == (allowed ? .notFound : .unauthenticated) }
                }
            }
        }

        @Test("a service other than the gateway cannot vouch for a caller on a public RPC")
        func otherServiceCannotVouch() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            await #expect {
                try await getImageDirectly(mesh: mesh, security: .mutualTLS(.service(.delivery, in: mesh.pkiDirectory)))
            } throws: { error in
                code(of: error) == .unauthenticated && (error as? RPCError)?.message.contains("gateway") == true
            }
        }
    }
}
