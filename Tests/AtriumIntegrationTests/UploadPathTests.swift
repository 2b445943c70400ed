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
    /// The upload byte path: `Registry.AuthorizeUpload` through the gateway, then HTTPS POSTs to the data plane.
    /// curl is the independent client for what the SDK does not exercise (reuse, forgery, expiry, bad bodies).
    @Suite("Upload path (AuthorizeUpload and the data plane)", .serialized)
    struct UploadPathTests {
        /// `curl -X POST` of `file` to the data plane: the status and the JSON answer.
        static func post(_ url: String, ca: String, file: String, directory: String, arguments: [String] = []) throws -> (status: Int, answer: [String: Any]) {
            let output = "\(directory)/post.json"
            let status = try BytePathTests.curl(
                url, ca: ca, output: output, arguments: ["-X", "POST", "-H", "Content-Type: application/dicom", "--data-binary", "@\(file)"] + arguments
            )
            let data = (try? Data(contentsOf: URL(fileURLWithPath: output))) ?? Data()
            return (status, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }

        /// Writes `slices` as files under `directory`.
        static func files(_ slices: [Data], in directory: String) throws -> [String] {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return try slices.enumerated().map { index, bytes in
                let path = "\(directory)/slice-\(index).dcm"
                try bytes.write(to: URL(fileURLWithPath: path))
                return path
            }
        }

        @Test("a 512×512 CT series is registered over HTTPS and fetched back byte-identical; reuse, forgery, expiry, bad DICOM, oversize and quota get their answers and store nothing")
        func series() async throws {
            let mesh = try await TestMesh(
                split: false, environment: ["ATRIUM_REGISTRY_UPLOAD_CAPABILITY_TTL_MS": "1500", "ATRIUM_REGISTRY_MAX_IMAGE_BYTES": "1048576"]
            )
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let small = try await mesh.createSubscriber(name: "Small", kind: .hospital, contract: .with { $0.storageQuotaBytes = 1_200_000 })
            let printer = try await mesh.createSubscriber(name: "Printer", kind: .printer)
            let directory = mesh.directory.path
            let ca = "\(mesh.pkiDirectory)/ca.pem"
            let slices = try (1...32).map { try OneProcessTests.slice($0, series: "1.2.999.73.1") }
            let files = try Self.files(slices, in: "\(directory)/series")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                // The SDK: one connection, capabilities eight at a time, each answer once the slice is durable.
                let receipts = try await atrium.withUploader(via: .bytes) { uploader in
                    var receipts: [Atrium_V1_RegisterResponse] = []
                    for file in files { receipts.append(try await uploader.registerImage(file: file)) }
                    #expect(uploader.usesBytePath)
                    return receipts
                }
                for (index, receipt) in receipts.enumerated() {
                    #expect(receipt.digest.sha256 == Hex.encode(SHA256.hash(data: slices[index])))
                    #expect(!receipt.deduplicated)
                }
                let outcomes = try await atrium.fetchImages(receipts.map(\.imageID), into: "\(directory)/back", options: .init(transport: .bytes))
                for (index, outcome) in outcomes.enumerated() {
                    #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/back/\(try outcome.image().imageID).dcm")) == slices[index])
                }
                // The same bytes again: the same image, deduplicated, as Register answers.
                let again = try await atrium.withUploader(via: .bytes) { uploader in try await uploader.registerImage(file: files[0]) }
                #expect(again.imageID == receipts[0].imageID && again.deduplicated)
                let stored = try await atrium.images().count
                #expect(stored == 32)

                // curl: a capability works once; forged, expired, malformed and oversize uploads store nothing.
                let grant = try await atrium.registry.authorizeUpload(.with { $0.count = 7 }, metadata: atrium.metadata)
                #expect(grant.capabilities.count == 7)
                let base = "https://127.0.0.1:\(grant.port)"
                let paths = grant.capabilities.map(\.path)
                let extra = try Self.files([try OneProcessTests.slice(99, series: "1.2.999.73.1")], in: "\(directory)/extra")[0]
                let first = try Self.post(base + paths[0], ca: ca, file: extra, directory: directory)
                #expect(first.status == 200)
                #expect((first.answer["imageId"] as? String)?.hasPrefix("img_") == true)
                let reused = try Self.post(base + paths[0], ca: ca, file: extra, directory: directory)
                #expect(reused.status == 409 && reused.answer["reason"] as? String == "spent")
                var forged = paths[1]
                let flip = forged.index(forged.endIndex, offsetBy: -20)
                forged.replaceSubrange(flip...flip, with: forged[flip] == "A" ? "B" : "A")
                let refused = try Self.post(base + forged, ca: ca, file: extra, directory: directory)
                #expect(refused.status == 403 && refused.answer["status"] as? String == "PERMISSION_DENIED")
                let garbage = "\(directory)/garbage.dcm"
                try Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: URL(fileURLWithPath: garbage))
                let malformed = try Self.post(base + paths[2], ca: ca, file: garbage, directory: directory)
                #expect(malformed.status == 400 && malformed.answer["status"] as? String == "INVALID_ARGUMENT")
                let oversize = "\(directory)/oversize.dcm"
                try Data(count: 2 << 20).write(to: URL(fileURLWithPath: oversize))
                let tooLarge = try Self.post(base + paths[3], ca: ca, file: oversize, directory: directory)
                #expect(tooLarge.status == 413)
                // A wrong declared digest: refused before the fsync.
                let mismatch = try Self.post(base + paths[4], ca: ca, file: extra, directory: directory, arguments: ["-H", "X-Atrium-SHA256: \(String(repeating: "0", count: 64))"])
                #expect(mismatch.status == 400)
                // `Expect: 100-continue`: the plane says 100 once the capability is accepted, then takes the body.
                let second = try Self.files([try OneProcessTests.slice(98, series: "1.2.999.73.1")], in: "\(directory)/second")[0]
                let continued = try Self.post(base + paths[6], ca: ca, file: second, directory: directory, arguments: ["-H", "Expect: 100-continue"])
                #expect(continued.status == 200 && (continued.answer["imageId"] as? String)?.hasPrefix("img_") == true)
                try await Task.sleep(for: .milliseconds(1600))
                let expired = try Self.post(base + paths[5], ca: ca, file: extra, directory: directory)
                #expect(expired.status == 403 && expired.answer["reason"] as? String == "expired")
                #expect(try await atrium.images().count == 34, "only the two accepted uploads were added")
            }
            // Over quota: RESOURCE_EXHAUSTED before anything is stored, through the SDK as through Register.
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: small.key)) { atrium in
                try await atrium.withUploader(via: .bytes) { uploader in
                    _ = try await uploader.registerImage(file: files[0])
                    _ = try await uploader.registerImage(file: files[1])
                    await #expect { _ = try await uploader.registerImage(file: files[2]) } throws: { ($0 as? RPCError)?.code == .resourceExhausted }
                }
                #expect(try await atrium.images().count == 2)
            }
            // Only the register role gets capabilities.
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: printer.key)) { atrium in
                await #expect { _ = try await atrium.registry.authorizeUpload(.with { $0.count = 1 }, metadata: atrium.metadata) } throws: {
                    ($0 as? RPCError)?.code == .permissionDenied
                }
            }
        }

        @Test("split: the registry's own upload plane takes the uploads; automatic falls back to Register when the byte path is off")
        func split() async throws {
            let mesh = try await TestMesh(split: true, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let slices = try (1...8).map { try OneProcessTests.slice($0, series: "1.2.999.74.1") }
            let files = try Self.files(slices, in: "\(mesh.directory.path)/series")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let ids = try await atrium.withUploader(via: .bytes) { uploader in
                    var ids: [String] = []
                    for file in files { ids.append(try await uploader.registerImage(file: file).imageID) }
                    return ids
                }
                let outcomes = try await atrium.fetchImages(ids, into: "\(mesh.directory.path)/back")
                for (index, outcome) in outcomes.enumerated() {
                    #expect(try Data(contentsOf: URL(fileURLWithPath: "\(mesh.directory.path)/back/\(try outcome.image().imageID).dcm")) == slices[index])
                }
            }
        }

        @Test("no upload plane: AuthorizeUpload answers FAILED_PRECONDITION, auto registers over gRPC, an explicit byte path fails")
        func off() async throws {
            let mesh = try await TestMesh(split: false, environment: ["ATRIUM_DELIVERY_BYTES_PORT": "off"])
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let files = try Self.files([try OneProcessTests.slice(1, series: "1.2.999.75.1")], in: "\(mesh.directory.path)/series")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let receipt = try await atrium.withUploader { uploader in
                    let receipt = try await uploader.registerImage(file: files[0])
                    #expect(!uploader.usesBytePath)
                    return receipt
                }
                #expect(receipt.imageID.hasPrefix("img_"))
                await #expect { _ = try await atrium.withUploader(via: .bytes) { _ in } } throws: { ($0 as? RPCError)?.code == .failedPrecondition }
            }
        }
    }
}
