import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Crypto
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing

extension IntegrationTests {
    /// The byte path: `Delivery.AuthorizeFetch` through the gateway, then HTTPS from delivery's data plane. curl
    /// is the independent client for what the SDK does not exercise (ranges, forged and expired capabilities).
    @Suite("Byte path (AuthorizeFetch and the data plane)", .serialized)
    struct BytePathTests {
        /// `curl` against the data plane: the status, and the body written to `output`.
        static func curl(_ url: String, ca: String, output: String, arguments: [String] = []) throws -> Int {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = ["-sS", "--cacert", ca, "-o", output, "-w", "%{http_code}"] + arguments + [url]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return Int(text) ?? -1
        }

        @Test("a 512×512 CT series comes over HTTPS byte-identical and as JPEG-LS; ranges, forged paths and methods get their HTTP answers; usage counts once per fetch ID")
        func series() async throws {
            let mesh = try await TestMesh(split: false)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let series = "1.2.999.71.1"
            let slices = try (1...32).map { try OneProcessTests.slice($0, series: series) }
            let directory = mesh.directory.path
            let ca = "\(mesh.pkiDirectory)/ca.pem"
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                var ids: [String] = []
                for bytes in slices { ids.append(try await atrium.registerImage(bytes: bytes).imageID) }
                let unknown = "img_unknown"
                // The SDK: capabilities in windows of 50, bytes over one keep-alive connection, each digest checked.
                let outcomes = try await atrium.fetchImages(
                    ids + [unknown], into: "\(directory)/bytes", options: .init(fetchID: "bytes-1", transport: .bytes)
                )
                #expect(outcomes.count == 33)
                for (index, id) in ids.enumerated() {
                    #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/bytes/\(id).dcm")) == slices[index])
                }
                guard case .refused(_, let code, _) = outcomes.last else { Issue.record("the unknown ID was delivered"); return }
                #expect(code == .notFound)
                // The same fetch ID again: delivered again, metered once.
                _ = try await atrium.fetchImages(ids, into: "\(directory)/again", options: .init(fetchID: "bytes-1", transport: .bytes))
                // JPEG-LS over the byte path: transcoded once, delivered as a variant, decoded to the same pixels.
                let compressed = try await atrium.fetchImages(Array(ids.prefix(4)), into: "\(directory)/jls", options: .init(encoding: .jpegLs, transport: .bytes))
                for outcome in compressed {
                    let image = try outcome.image()
                    #expect(image.encoding == .jpegLs)
                    #expect(image.digest.sizeBytes < UInt64(slices[0].count))
                }
                let deadline = ContinuousClock.now + .seconds(10)
                var usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                while usage.deliveries < 36 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                }
                #expect(usage.deliveries == 36, "32 originals once (two reads under one fetch ID) and 4 JPEG-LS variants")

                // curl: the whole object, a range, a suffix range, a range past the end, HEAD, POST, a forged and an
                // unknown path.
                let grant = try await atrium.delivery.authorizeFetch(.with { $0.imageIds = [ids[0]] }, metadata: atrium.metadata)
                let capability = try #require(grant.capabilities.first)
                #expect(capability.object.sha256 == Hex.encode(SHA256.hash(data: slices[0])))
                #expect(capability.object.sizeBytes == UInt64(slices[0].count))
                let base = "https://127.0.0.1:\(grant.port)"
                let body = "\(directory)/curl.out"
                #expect(try Self.curl(base + capability.path, ca: ca, output: body) == 200)
                #expect(try Data(contentsOf: URL(fileURLWithPath: body)) == slices[0])
                #expect(try Self.curl(base + capability.path, ca: ca, output: body, arguments: ["-H", "Range: bytes=1000-1999"]) == 206)
                #expect(try Data(contentsOf: URL(fileURLWithPath: body)) == slices[0][1000..<2000])
                #expect(try Self.curl(base + capability.path, ca: ca, output: body, arguments: ["-H", "Range: bytes=-128"]) == 206)
                #expect(try Data(contentsOf: URL(fileURLWithPath: body)) == slices[0].suffix(128))
                #expect(try Self.curl(base + capability.path, ca: ca, output: body, arguments: ["-H", "Range: bytes=\(slices[0].count)-"]) == 416)
                #expect(try Self.curl(base + capability.path, ca: ca, output: body, arguments: ["-I"]) == 200)
                #expect(try Self.curl(base + capability.path, ca: ca, output: body, arguments: ["-X", "POST"]) == 405)
                var forged = capability.path
                let flip = forged.index(forged.endIndex, offsetBy: -60)
                forged.replaceSubrange(flip...flip, with: forged[flip] == "A" ? "B" : "A")
                #expect(try Self.curl(base + forged, ca: ca, output: body) == 403)
                #expect(try Self.curl(base + "/v1/objects/", ca: ca, output: body) == 403)
                #expect(try Self.curl(base + "/registry/blobs/\(capability.object.sha256)", ca: ca, output: body) == 404)
            }
        }

        @Test("a revoked share stops new capabilities within delivery's visibility window and outstanding ones at their expiry; a paced contract is sent to Fetch")
        func revocation() async throws {
            let mesh = try await TestMesh(
                split: false, environment: ["ATRIUM_DELIVERY_CAPABILITY_TTL_MS": "1500", "ATRIUM_DELIVERY_VISIBILITY_MS": "1000"]
            )
            defer { mesh.stop() }
            let owner = try await mesh.createSubscriber(name: "Owner", kind: .hospital)
            let receiver = try await mesh.createSubscriber(name: "Receiver", kind: .hospital)
            let paced = try await mesh.createSubscriber(
                name: "Paced", kind: .hospital, contract: .with { $0.storageQuotaBytes = 1 << 40; $0.bytesPerSecond = 10_000_000 }
            )
            let ca = "\(mesh.pkiDirectory)/ca.pem"
            let body = "\(mesh.directory.path)/curl.out"
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.72.1", patientID: "P-SHARE")
            fixture.size = 512
            let bytes = Data(try Fixtures.dicom(fixture))
            let (image, grantID) = try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { atrium in
                let image = try await atrium.registerImage(bytes: bytes).imageID
                let grant = try await atrium.registry.grantShare(.with { $0.receiverID = receiver.id; $0.patientID = "P-SHARE" }, metadata: atrium.metadata)
                return (image, grant.grantID)
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: receiver.key)) { atrium in
                let grant = try await atrium.delivery.authorizeFetch(.with { $0.imageIds = [image] }, metadata: atrium.metadata)
                let url = "https://127.0.0.1:\(grant.port)" + (try #require(grant.capabilities.first)).path
                #expect(try Self.curl(url, ca: ca, output: body) == 200)
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { owner in
                    _ = try await owner.registry.revokeShare(.with { $0.grantID = grantID }, metadata: owner.metadata)
                }
                // A new capability is refused once delivery's visibility window (1 s here) has passed since the
                // revocation returned: the image is no longer visible.
                try await Task.sleep(for: .milliseconds(1050))
                let after = try await atrium.delivery.authorizeFetch(.with { $0.imageIds = [image] }, metadata: atrium.metadata)
                #expect(after.capabilities.isEmpty && after.refused.first?.code == Int32(Status.Code.notFound.rawValue))
                // The outstanding one is refused once its lifetime (1.5 s here) is over: a read begun 1.5 s after
                // the grant cannot pass, however slow the machine.
                let granted = grant.capabilities[0].expires.date
                let wait = granted.timeIntervalSinceNow
                if wait > 0 { try await Task.sleep(for: .milliseconds(Int(wait * 1000) + 50)) }
                #expect(try Self.curl(url, ca: ca, output: body) == 403)
            }
            // A contract that paces bytes: AuthorizeFetch is FAILED_PRECONDITION, and the SDK's automatic choice
            // falls back to Fetch.
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: owner.key)) { atrium in
                _ = try await atrium.registry.grantShare(.with { $0.receiverID = paced.id; $0.patientID = "P-SHARE" }, metadata: atrium.metadata)
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: paced.key)) { atrium in
                await #expect { _ = try await atrium.delivery.authorizeFetch(.with { $0.imageIds = [image] }, metadata: atrium.metadata) } throws: {
                    code(of: $0) == .failedPrecondition
                }
                let outcome = try await atrium.fetchImages([image], into: "\(mesh.directory.path)/paced", options: .init(transport: .automatic))
                #expect(try outcome[0].image().digest.sha256 == Hex.encode(SHA256.hash(data: bytes)))
            }
        }

        @Test("a data plane the client cannot reach: auto falls back to Fetch, an explicit byte path fails UNAVAILABLE")
        func unreachable() async throws {
            // The advertised URL names a port nothing listens on, as when a firewall opens only the gateway's port.
            let mesh = try await TestMesh(split: false, environment: ["ATRIUM_DELIVERY_BYTES_URL": "https://127.0.0.1:9"])
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let bytes = try OneProcessTests.slice(1, series: "1.2.999.73.1")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let image = try await atrium.registerImage(bytes: bytes).imageID
                let fetched = try await atrium.fetchImages([image], into: "\(mesh.directory.path)/auto", options: .init(transport: .automatic))
                #expect(try fetched[0].image().digest.sha256 == Hex.encode(SHA256.hash(data: bytes)))
                await #expect {
                    _ = try await atrium.fetchImages(
                        [image], into: "\(mesh.directory.path)/bytes",
                        options: .init(transport: .bytes, maxAttempts: 2, initialBackoff: .milliseconds(10))
                    )
                } throws: { code(of: $0) == .unavailable }
            }
        }
    }
}
