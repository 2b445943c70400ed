import AtriumAPI
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Crypto
import Foundation
import GRPCCore
import AtriumRuntime
import SwiftProtobuf
import Testing

/// The services' refusals and a round trip, through the real gateway and services wired in-process
/// (``InProcessMesh``): the same code `atrium serve all` runs, without processes, ports or TLS.
@Suite("Services in-process: refusals and a round trip")
struct InProcessServiceTests {
    /// The generated stubs over the mesh's client link.
    struct Stubs {
        let registry: Atrium_V1_Registry.Client<LocalLink.Client>
        let delivery: Atrium_V1_Delivery.Client<LocalLink.Client>
        let processing: Atrium_V1_Processing.Client<LocalLink.Client>
        let admin: Atrium_V1_SecurityAdmin.Client<LocalLink.Client>
        let account: Atrium_V1_Account.Client<LocalLink.Client>

        init(_ connection: Connection) throws {
            guard case .inProcess(let client) = connection else { throw ConfigurationError(key: "link", problem: "not in-process") }
            registry = .init(wrapping: client)
            delivery = .init(wrapping: client)
            processing = .init(wrapping: client)
            admin = .init(wrapping: client)
            account = .init(wrapping: client)
        }
    }

    func code(_ body: () async throws -> Void) async -> RPCError.Code? {
        do {
            try await body()
            return nil
        } catch {
            return (error as? RPCError)?.code
        }
    }

    /// Registers `bytes` as one object.
    func register(_ stubs: Stubs, _ bytes: Data, metadata: Metadata, sha256: String = "") async throws -> Atrium_V1_RegisterResponse {
        try await stubs.registry.register(
            request: StreamingClientRequest(metadata: metadata) { writer in
                try await writer.write(.with { $0.header = .with { $0.format = .dicomPart10; $0.sizeBytes = UInt64(bytes.count); $0.sha256 = sha256 } })
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + (1 << 20), bytes.count)
                    try await writer.write(.with { $0.chunk = .with { $0.offset = UInt64(offset); $0.data = bytes[offset..<end] } })
                    offset = end
                }
            }
        )
    }

    /// A subscriber of `kind` with an API key.
    func subscriber(_ stubs: Stubs, _ mesh: InProcessMesh, kind: Atrium_V1_SubscriberKind, quota: UInt64 = 1 << 40) async throws -> (id: String, key: String) {
        let created = try await stubs.admin.createSubscriber(
            .with { $0.displayName = "\(kind)"; $0.kind = kind; $0.contract = .with { $0.storageQuotaBytes = quota } },
            metadata: mesh.metadata()
        )
        let key = try await stubs.admin.createApiKey(.with { $0.subscriberID = created.subscriberID }, metadata: mesh.metadata())
        return (created.subscriberID, key.secret)
    }

    @Test("registry: no key, a wrong key, a missing role, a malformed object, an unknown ID; a stored object reads back")
    func registry() async throws {
        let mesh = try await InProcessMesh.start()
        let stubs = try Stubs(mesh.gateway)
        let hospital = try await subscriber(stubs, mesh, kind: .hospital)
        let patient = try await subscriber(stubs, mesh, kind: .individual)
        var fixture = DICOMFixture(sopInstanceUID: "1.2.999.80.1", patientID: "P-IN")
        fixture.size = 512
        let bytes = Data(try Fixtures.dicom(fixture))
        #expect(await code { _ = try await register(stubs, bytes, metadata: [:]) } == .unauthenticated)
        #expect(await code { _ = try await register(stubs, bytes, metadata: mesh.metadata(apiKey: "atr_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")) } == .unauthenticated)
        #expect(await code { _ = try await register(stubs, bytes, metadata: mesh.metadata(apiKey: patient.key)) } == .permissionDenied)
        #expect(await code { _ = try await register(stubs, Data("not DICOM".utf8), metadata: mesh.metadata(apiKey: hospital.key)) } == .invalidArgument)
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = "img_unknown" }, metadata: mesh.metadata(apiKey: hospital.key)) } == .notFound)
        let receipt = try await register(stubs, bytes, metadata: mesh.metadata(apiKey: hospital.key))
        let record = try await stubs.registry.getImage(.with { $0.imageID = receipt.imageID }, metadata: mesh.metadata(apiKey: hospital.key))
        #expect(record.patientID == "P-IN" && record.imageID == receipt.imageID)
        // Someone else's image is not found, not forbidden.
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = receipt.imageID }, metadata: mesh.metadata(apiKey: patient.key)) } == .notFound)
        await mesh.stop()
    }

    @Test("registry: header.sha256 is checked for a slice held in memory and for an object written as it streams (over 4 MiB)")
    func uploadDigests() async throws {
        let mesh = try await InProcessMesh.start()
        let stubs = try Stubs(mesh.gateway)
        let hospital = try await subscriber(stubs, mesh, kind: .hospital)
        let metadata = mesh.metadata(apiKey: hospital.key)
        for (index, size) in [(1, 256), (2, 1600)] {
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.81.\(index)", patientID: "P-DIGEST")
            fixture.size = size
            let bytes = Data(try Fixtures.dicom(fixture))
            let digest = Hex.encode(SHA256.hash(data: bytes))
            let wrong = String(repeating: "0", count: 64)
            do {
                _ = try await register(stubs, bytes, metadata: metadata, sha256: wrong)
                Issue.record("a wrong digest was accepted (\(bytes.count) bytes)")
            } catch let error as RPCError {
                #expect(error.code == .invalidArgument && error.message.contains("header.sha256"), "\(error)")
            }
            // A wrong digest on bytes that are not DICOM either is reported as the digest mismatch.
            await #expect {
                _ = try await register(stubs, Data(repeating: 7, count: bytes.count), metadata: metadata, sha256: wrong)
            } throws: { ($0 as? RPCError)?.code == .invalidArgument && "\($0)".contains("header.sha256") }
            let receipt = try await register(stubs, bytes, metadata: metadata, sha256: digest)
            #expect(receipt.digest.sha256 == digest && receipt.digest.sizeBytes == UInt64(bytes.count), "\(bytes.count) bytes")
        }
        await mesh.stop()
    }

    @Test("expiry follows the services' clock: a share grant ends when the injected clock passes its expiry")
    func injectedClock() async throws {
        let clock = TestClock()
        let mesh = try await InProcessMesh.start(now: clock.now)
        let stubs = try Stubs(mesh.gateway)
        let registrant = try await subscriber(stubs, mesh, kind: .hospital)
        let grantee = try await subscriber(stubs, mesh, kind: .hospital)
        var fixture = DICOMFixture(sopInstanceUID: "1.2.999.80.8", patientID: "P-CLOCK")
        fixture.size = 64
        let image = try await register(stubs, Data(try Fixtures.dicom(fixture)), metadata: mesh.metadata(apiKey: registrant.key)).imageID
        let asGrantee = mesh.metadata(apiKey: grantee.key)
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = image }, metadata: asGrantee) } == .notFound)
        // A grant for one hour of the services' time, not the test's.
        _ = try await stubs.registry.grantShare(
            .with {
                $0.receiverID = grantee.id
                $0.patientID = "P-CLOCK"
                $0.expiresAt = .init(date: clock.now().addingTimeInterval(3600))
            },
            metadata: mesh.metadata(apiKey: registrant.key)
        )
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = image }, metadata: asGrantee) } == nil)
        clock.advance(by: 3599)
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = image }, metadata: asGrantee) } == nil)
        #expect(try await stubs.registry.listImages(.init(), metadata: asGrantee).images.map(\.imageID) == [image])
        clock.advance(by: 2)
        #expect(await code { _ = try await stubs.registry.getImage(.with { $0.imageID = image }, metadata: asGrantee) } == .notFound)
        #expect(try await stubs.registry.listImages(.init(), metadata: asGrantee).images.isEmpty)
        await mesh.stop()
    }

    @Test("audit: every service writes the method one way, and one call's entries share its request ID")
    func auditOnePath() async throws {
        let mesh = try await InProcessMesh.start()
        let stubs = try Stubs(mesh.gateway)
        let hospital = try await subscriber(stubs, mesh, kind: .hospital)
        let metadata = mesh.metadata(apiKey: hospital.key)
        var fixture = DICOMFixture(sopInstanceUID: "1.2.999.80.7", patientID: "P-AUDIT")
        fixture.size = 64
        let image = try await register(stubs, Data(try Fixtures.dicom(fixture)), metadata: metadata).imageID
        _ = try await stubs.delivery.fetch(.with { $0.imageIds = [image] }, metadata: metadata) { response in
            for try await _ in response.messages {}
        }
        try await stubs.processing.run(
            request: StreamingClientRequest(metadata: metadata) { writer in
                try await writer.write(.with {
                    $0.header = .with {
                        $0.operation = .with { $0.smooth = .with { $0.sigma = 1 } }
                        $0.imageIds = .with { $0.imageIds = [image] }
                    }
                })
            }
        ) { response in
            for try await _ in response.messages {}
        }
        // The services' entries for the image, each found by the method a client called.
        func entries(_ query: Atrium_V1_QueryAuditLogRequest) async throws -> [Atrium_V1_AuditEntry] {
            var query = query
            query.page = .with { $0.pageSize = 100 }
            // Audit entries travel in batches: wait for them.
            for _ in 0..<100 {
                let found = try await stubs.admin.queryAuditLog(query, metadata: mesh.metadata()).entries
                if !found.isEmpty { return found }
                try await Task.sleep(for: .milliseconds(50))
            }
            return []
        }
        for method in [
            Atrium_V1_Registry.Method.Register.descriptor, Atrium_V1_Delivery.Method.Fetch.descriptor, Atrium_V1_Processing.Method.Run.descriptor,
        ] {
            let service = try await entries(.with { $0.resourceID = image; $0.method = method.fullyQualifiedMethod })
            #expect(service.count == 1, "\(method)")
            guard let entry = service.first else { continue }
            #expect(entry.method == method.fullyQualifiedMethod && entry.subscriberID == hospital.id && entry.patientID == "P-AUDIT")
            // The same call, as the gateway saw it, under the same request ID and the same method name.
            // The gateway, the service and (for a run) the registry send their entries in batches of their own: wait
            // for all of them: the gateway's, the service's, and a run's registered result.
            let expected = method == Atrium_V1_Processing.Method.Run.descriptor ? 3 : 2
            var call = try await entries(.with { $0.requestID = entry.requestID })
            for _ in 0..<100 where call.count < expected {
                try await Task.sleep(for: .milliseconds(50))
                call = try await entries(.with { $0.requestID = entry.requestID })
            }
            let gateway = call.filter { $0.resourceID.isEmpty }
            #expect(gateway.count == 1 && gateway.first?.method == method.fullyQualifiedMethod && gateway.first?.outcome == "ok", "\(call)")
            // Everything else under that request ID is what the call touched: a run's registered result is the
            // registry's RegisterFor entry.
            #expect(call.allSatisfy { $0.requestID == entry.requestID })
            let other = call.filter { $0.method != method.fullyQualifiedMethod }
            #expect(other.allSatisfy { $0.method == Atrium_V1_RegistryInternal.Method.RegisterFor.descriptor.fullyQualifiedMethod }, "\(other)")
            #expect(call.count == expected && other.count == expected - 2, "\(call)")
            // A query written with gRPC's leading slash finds the same entries.
            #expect(try await entries(.with { $0.requestID = entry.requestID; $0.method = "/" + method.fullyQualifiedMethod }).count == call.count - other.count)
        }
        await mesh.stop()
    }

    @Test("delivery and processing: unknown images and jobs, an empty run, a printer that is not one")
    func deliveryAndProcessing() async throws {
        let mesh = try await InProcessMesh.start()
        let stubs = try Stubs(mesh.gateway)
        let hospital = try await subscriber(stubs, mesh, kind: .hospital)
        let metadata = mesh.metadata(apiKey: hospital.key)
        // A fetch of an unknown image is refused per image, with its status; nothing is sent.
        let fetched = try await stubs.delivery.fetch(.with { $0.imageIds = ["img_unknown"] }, metadata: metadata) { response in
            var all: [Atrium_V1_FetchResponse] = []
            for try await message in response.messages { all.append(message) }
            return all
        }
        #expect(fetched.count == 1)
        if case .refused(let status)? = fetched.first?.part { #expect(status.id == "img_unknown" && status.code == 5) } else { Issue.record("\(fetched)") }
        #expect(await code { _ = try await stubs.delivery.submitPrintJob(.with { $0.printerID = hospital.id; $0.imageIds = ["img_unknown"] }, metadata: metadata) } != nil)
        #expect(await code { _ = try await stubs.delivery.listInbox(.init(), metadata: [:]) } == .unauthenticated)
        #expect(await code { _ = try await stubs.processing.getJob(.with { $0.jobID = "job_none@processing-1" }, metadata: metadata) } == .notFound)
        #expect(await code {
            _ = try await stubs.processing.submit(request: StreamingClientRequest(metadata: metadata) { writer in try await writer.write(.init()) })
        } == .invalidArgument)
        await mesh.stop()
    }

    /// `count` distinct objects of one size.
    func objects(_ count: Int, tag: Int) throws -> [Data] {
        try (0..<count).map { index in
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.81.\(tag).\(index)", patientID: "P-LEASE")
            fixture.size = 64
            return Data(try Fixtures.dicom(fixture))
        }
    }

    @Test("storage quota as a lease: uploads draw on one reservation, the next is taken when it is used up, and an idle lease is given back")
    func storageLeases() async throws {
        let size = UInt64(try objects(1, tag: 0)[0].count)
        // A lease of 8 uploads, drawn on for a minute.
        var mesh = try await InProcessMesh.start(environment: ["ATRIUM_REGISTRY_STORAGE_LEASE_BYTES": "\(8 * size)", "ATRIUM_REGISTRY_STORAGE_LEASE_MS": "60000"])
        var stubs = try Stubs(mesh.gateway)
        var hospital = try await subscriber(stubs, mesh, kind: .hospital)
        var metadata = mesh.metadata(apiKey: hospital.key)
        let first = try objects(9, tag: 1)
        for object in first.prefix(3) { _ = try await register(stubs, object, metadata: metadata) }
        // Used (settled) plus reserved (the lease's hold, less settled draws) is the whole lease, not three uploads.
        var usage = try await stubs.account.getUsage(.init(), metadata: metadata)
        #expect(usage.storageUsedBytes + usage.storageReservedBytes == 8 * size, "\(usage)")
        // The ninth upload does not fit the first lease: a second one is taken.
        for object in first.dropFirst(3) { _ = try await register(stubs, object, metadata: metadata) }
        usage = try await stubs.account.getUsage(.init(), metadata: metadata)
        #expect(usage.storageUsedBytes + usage.storageReservedBytes == 16 * size, "\(usage)")
        await mesh.stop()

        // A lease drawn on for 200 ms: once idle, its remainder is given back and usage is what was stored.
        mesh = try await InProcessMesh.start(environment: ["ATRIUM_REGISTRY_STORAGE_LEASE_BYTES": "\(8 * size)", "ATRIUM_REGISTRY_STORAGE_LEASE_MS": "200"])
        stubs = try Stubs(mesh.gateway)
        hospital = try await subscriber(stubs, mesh, kind: .hospital)
        metadata = mesh.metadata(apiKey: hospital.key)
        _ = try await register(stubs, try objects(1, tag: 2)[0], metadata: metadata)
        usage = try await stubs.account.getUsage(.init(), metadata: metadata)
        let deadline = ContinuousClock.now + .seconds(30)
        while usage.storageReservedBytes > 0, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            usage = try await stubs.account.getUsage(.init(), metadata: metadata)
        }
        #expect(usage.storageUsedBytes == size && usage.storageReservedBytes == 0, "\(usage)")

        // A quota smaller than a lease: uploads are admitted one by one, and the one that does not fit is refused
        // before anything is stored.
        let small = try await subscriber(stubs, mesh, kind: .hospital, quota: size * 5 / 2)
        let objects = try objects(3, tag: 3)
        metadata = mesh.metadata(apiKey: small.key)
        for object in objects.prefix(2) { _ = try await register(stubs, object, metadata: metadata) }
        #expect(await code { _ = try await register(stubs, objects[2], metadata: metadata) } == .resourceExhausted)
        await mesh.stop()
    }
}
