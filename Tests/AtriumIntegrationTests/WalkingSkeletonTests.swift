import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing
import AtriumTransport
import AtriumAssembly

extension IntegrationTests {
    /// The walking skeleton end to end: the real mesh as separate processes, TLS to the gateway, mTLS behind it.
    @Suite("Walking skeleton through the gateway", .serialized)
    struct WalkingSkeletonTests {
        @Test("a 50 MiB image registered through the gateway comes back byte-identical, and no process exceeds 150 MiB")
        func roundTrip() async throws {
            let mesh = try await TestMesh()
            defer { mesh.stop() }
            let source = "\(mesh.directory.path)/source.dcm"
            let fetched = "\(mesh.directory.path)/fetched.dcm"
            try Fixtures.writePartTenFile(at: source, payloadBytes: 50 << 20)
            let expected = try sha256(ofFile: source)
            var before: [String: UInt64] = [:]
            for (instance, _) in mesh.mesh.endpoints {
                let pid = try #require(mesh.mesh.processIdentifier(of: instance))
                before[instance.description] = ProcessMemory.peakResidentBytes(of: pid)
            }

            let receipt = try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                let receipt = try await atrium.registerImage(file: source)
                try await atrium.fetchImage(id: receipt.imageID, to: fetched)
                return receipt
            }
            #expect(receipt.digest.sha256 == expected)
            #expect(receipt.digest.sizeBytes == (try FileManager.default.attributesOfItem(atPath: source)[.size] as? UInt64))
            #expect(try sha256(ofFile: fetched) == expected)

            for (instance, _) in mesh.mesh.endpoints {
                let pid = try #require(mesh.mesh.processIdentifier(of: instance))
                let peak = try #require(ProcessMemory.peakResidentBytes(of: pid))
                #expect(peak < 150 << 20, "\(instance) peaked at \(peak >> 20) MiB")
                // It really streams: no process held the whole file (its peak would have grown by 50 MiB or more).
                // Measured growth is 20-40 MiB whatever the size: a 200 MiB round trip grows no process by more.
                // Signed: a peak read before start-up finished, or from a process since restarted, may exceed this one.
                let growth = Int64(peak) - Int64(before[instance.description] ?? 0)
                #expect(growth < 50 << 20, "\(instance) grew by \(growth >> 20) MiB during the round trip")
            }
        }

        @Test("calls without a key or with a wrong key are UNAUTHENTICATED; unknown images are NOT_FOUND")
        func refusals() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let wrongKeys = ["", "not-a-key", "atr_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", String(mesh.operatorKey.dropLast()) + (mesh.operatorKey.hasSuffix("x") ? "y" : "x")]
            for key in wrongKeys {
                await #expect {
                    try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { try await $0.image(id: "img_x") }
                } throws: { code(of: $0) == .unauthenticated }
            }
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.image(id: "img_doesnotexist") }
            } throws: { code(of: $0) == .notFound }
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.fetchImage(id: "img_doesnotexist", to: "\(mesh.directory.path)/x") }
            } throws: { code(of: $0) == .notFound }
        }

        @Test("a stranger cannot see another subscriber's image; malformed uploads are refused and store nothing")
        func visibilityAndMalformedInput() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try mesh.addSubscriber(name: "General Hospital", kind: "hospital", roles: "register,receive")
            let stranger = try mesh.addSubscriber(name: "Other Clinic", kind: "hospital", roles: "register,receive")
            let file = "\(mesh.directory.path)/one.dcm"
            try Fixtures.writePartTenFile(at: file, payloadBytes: 300_000)
            let receipt = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.registerImage(file: file) }
            let record = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.image(id: receipt.imageID) }
            #expect(record.registrantID == hospital.id)
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: stranger.key)) { try await $0.image(id: receipt.imageID) }
            } throws: { code(of: $0) == .notFound }
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: stranger.key)) {
                    try await $0.fetchImage(id: receipt.imageID, to: "\(mesh.directory.path)/stolen.dcm")
                }
            } throws: { code(of: $0) == .notFound }
            #expect(!FileManager.default.fileExists(atPath: "\(mesh.directory.path)/stolen.dcm"))
            // The operator sees everything.
            _ = try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.image(id: receipt.imageID) }

            let blobsBefore = try BlobTree(root: "\(mesh.directory.path)/registry/blobs").files
            for bytes in [Data("too short".utf8), Data(repeating: 7, count: 5000)] {
                await #expect {
                    try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.registerImage(bytes: bytes) }
                } throws: { error in
                    code(of: error) == .invalidArgument && (error as? RPCError)?.message.contains("not DICOM") == true
                }
            }
            // A message over the 4 MiB limit is refused by the gateway before any backend sees it.
            var oversized = mesh.clientConfiguration(apiKey: hospital.key)
            oversized.chunkSize = 5 << 20
            let big = Data(repeating: 0, count: 128) + Data("DICM".utf8) + Data(repeating: 1, count: 5 << 20)
            await #expect {
                try await AtriumClient.with(oversized) { try await $0.registerImage(bytes: big) }
            } throws: { code(of: $0) == .resourceExhausted }
            #expect(try BlobTree(root: "\(mesh.directory.path)/registry/blobs").files == blobsBefore)
        }

        @Test("identity headers a caller sends are ignored, and deduplication is reported per subscriber")
        func forgedIdentityAndDeduplication() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let owner = try mesh.addSubscriber(name: "Owner", kind: "hospital", roles: "register,receive")
            let other = try mesh.addSubscriber(name: "Other", kind: "hospital", roles: "register,receive")
            let bytes = Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.7.70000", patientID: "P-1"), privatePayload: [UInt8](repeating: 9, count: 70_000)))
            let first = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { try await $0.registerImage(bytes: bytes) }
            #expect(!first.deduplicated)
            // The same bytes from another subscriber: stored once, but that subscriber learns nothing about the owner.
            let second = try await AtriumClient.with(mesh.clientConfiguration(apiKey: other.key)) { try await $0.registerImage(bytes: bytes) }
            #expect(!second.deduplicated)
            let again = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { try await $0.registerImage(bytes: bytes) }
            #expect(again.deduplicated)
            #expect(again.imageID == first.imageID, "the same SOP instance from the same registrant is the same image")

            let forged: Metadata = [
                "authorization": "Bearer \(other.key)", "atrium-subscriber": .string(owner.id), "atrium-kind": "operator",
                "atrium-roles": "admin,receive",
            ]
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: other.key)) { atrium in
                    try await atrium.registry.getImage(request: ClientRequest(message: .with { $0.imageID = first.imageID }, metadata: forged))
                }
            } throws: { code(of: $0) == .notFound }
        }

        @Test("the gateway does not expose internal services, even to an operator")
        func internalServicesAreNotPublic() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            try await ClientFactory.withClient(to: mesh.mesh.gatewayAddress, security: .tls(caPath: "\(mesh.pkiDirectory)/ca.pem")) { client in
                let metadata: Metadata = ["authorization": "Bearer \(mesh.operatorKey)"]
                await #expect {
                    try await Atrium_V1_RegistryInternal.Client(wrapping: client).resolveImage(
                        request: ClientRequest(message: .with { $0.imageID = "img_x"; $0.caller.subscriberID = "sub_x" }, metadata: metadata)
                    )
                } throws: { code(of: $0) == .unimplemented }
                await #expect {
                    try await Atrium_V1_SecurityInternal.Client(wrapping: client).authorize(
                        request: ClientRequest(message: .with { $0.apiKey = mesh.operatorKey }, metadata: metadata)
                    )
                } throws: { code(of: $0) == .unimplemented }
            }
        }

        @Test("stub RPCs answer UNIMPLEMENTED and name the issue that delivers them")
        func stubsAreHonest() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                    try await Atrium_V1_Backup.Client(wrapping: atrium.connection).listBackups(
                        request: ClientRequest(message: .init(), metadata: ["authorization": "Bearer \(mesh.operatorKey)"])
                    )
                }
            } throws: { error in
                code(of: error) == .unimplemented && (error as? RPCError)?.message.contains("the backup work") == true
            }
        }
    }
}

/// The files of a blob store, for before/after comparisons.
struct BlobTree {
    let files: Set<String>

    init(root: String) throws {
        var files: Set<String> = []
        if let enumerator = FileManager.default.enumerator(atPath: "\(root)/sha256") {
            for case let path as String in enumerator where path.count > 64 { files.insert(path) }
        }
        self.files = files
    }
}
