import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import AtriumTesting
import Foundation
import GRDB
import GRPCCore
import SwiftProtobuf
import Testing
import AtriumAssembly

extension IntegrationTests {
    /// What a crash of the registry leaves behind.
    @Suite("Registry crash safety", .serialized)
    struct CrashSafetyTests {
        @Test("kill -9 of the registry mid-upload leaves no partial blob visible and no record without its blob")
        func killMidUpload() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let blobRoot = "\(mesh.directory.path)/registry/blobs"
            let complete = "\(mesh.directory.path)/complete.dcm"
            try Fixtures.writePartTenFile(at: complete, payloadBytes: 2 << 20, seed: 1)
            let acknowledged = try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.registerImage(file: complete) }

            // An upload that sends 64 chunks of 256 KiB slowly; the registry is killed once some bytes landed.
            let registry = LocalMesh.Instance(.registry)
            let uploadKey = mesh.operatorKey
            let upload = Task {
                try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                    let request = StreamingClientRequest<Atrium_V1_RegisterRequest>(metadata: ["authorization": "Bearer \(uploadKey)"]) { writer in
                        try await writer.write(.with { $0.header = .with { $0.format = .dicomPart10 } })
                        var offset: UInt64 = 0
                        for index in 0..<64 {
                            var chunk = index == 0 ? Data(repeating: 0, count: 128) + Data("DICM".utf8) : Data()
                            chunk.append(Data(repeating: UInt8(index), count: 256 << 10))
                            try await writer.write(.with { $0.chunk = .with { $0.offset = offset; $0.data = chunk } })
                            offset += UInt64(chunk.count)
                            try await Task.sleep(for: .milliseconds(50))
                        }
                    }
                    return try await atrium.registry.register(request: request)
                }
            }
            let deadline = ContinuousClock.now + .seconds(20)
            var partialBytes = 0
            while ContinuousClock.now < deadline, partialBytes <= 1 << 20 {
                let partial = try FileManager.default.contentsOfDirectory(atPath: "\(blobRoot)/tmp")
                if let name = partial.first {
                    partialBytes = (try? FileManager.default.attributesOfItem(atPath: "\(blobRoot)/tmp/\(name)")[.size] as? Int) ?? 0
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            mesh.mesh.kill(registry, signal: SIGKILL)
            #expect(partialBytes > 1 << 20, "the registry was not caught mid-upload")
            #expect(try !FileManager.default.contentsOfDirectory(atPath: "\(blobRoot)/tmp").isEmpty)
            await #expect(throws: (any Error).self) { try await upload.value }

            // Nothing half-written is visible: every blob hashes to its name, and every record has its blob.
            try assertStoreConsistent(blobRoot: blobRoot, database: "\(mesh.directory.path)/registry/registry.sqlite", expectedRecords: 1)

            // After a restart the leftovers are gone, the acknowledged image is intact, and uploads work again.
            try await mesh.mesh.restart(registry)
            #expect(try FileManager.default.contentsOfDirectory(atPath: "\(blobRoot)/tmp").isEmpty)
            let refetched = "\(mesh.directory.path)/refetched.dcm"
            try await retrying {
                _ = try await AtriumClient.with(mesh.clientConfiguration()) { atrium in
                    try await atrium.fetchImage(id: acknowledged.imageID, to: refetched)
                }
            }
            #expect(try sha256(ofFile: refetched) == acknowledged.digest.sha256)
            // The gateway's own connection to the registry comes back on its backoff schedule (up to 2 s after the
            // restart): until then an upload is UNAVAILABLE, which a client retries, as this one does.
            var registered: Atrium_V1_RegisterResponse?
            try await retrying {
                registered = try await AtriumClient.with(mesh.clientConfiguration()) { try await $0.registerImage(file: complete) }
            }
            let again = try #require(registered)
            #expect(again.digest == acknowledged.digest)
            #expect(again.imageID == acknowledged.imageID && again.deduplicated, "registering the same SOP instance again is a no-op")
            try assertStoreConsistent(blobRoot: blobRoot, database: "\(mesh.directory.path)/registry/registry.sqlite", expectedRecords: 1)
        }

        @Test("kill -9 at a random point of a 200-image concurrent ingest, 20 times: every acknowledged image is there and hashes right")
        func killDuringConcurrentIngest() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let registry = LocalMesh.Instance(.registry)
            let blobRoot = "\(mesh.directory.path)/registry/blobs"
            let database = "\(mesh.directory.path)/registry/registry.sqlite"
            var generator = SplitMix64(seed: 2026)
            var acknowledged: [String: String] = [:]  // image ID → SHA-256
            for round in 0..<20 {
                let objects = try (0..<200).map { index in
                    var fixture = DICOMFixture(sopInstanceUID: "1.2.999.20.\(round).\(index)", patientID: "P-\(index % 7)", seed: UInt64(round * 1000 + index))
                    fixture.size = 64
                    return Data(try Fixtures.dicom(fixture))
                }
                let configuration = mesh.clientConfiguration()
                let ingest = Task {
                    try await AtriumClient.with(configuration) { atrium in
                        await withTaskGroup(of: [(String, String)].self) { group in
                            for worker in 0..<8 {
                                group.addTask {
                                    var received: [(String, String)] = []
                                    for index in stride(from: worker, to: objects.count, by: 8) {
                                        // After the kill every call fails; only acknowledgements count.
                                        guard let receipt = try? await atrium.registerImage(bytes: objects[index]) else { continue }
                                        received.append((receipt.imageID, receipt.digest.sha256))
                                    }
                                    return received
                                }
                            }
                            return await group.reduce(into: []) { $0 += $1 }
                        }
                    }
                }
                // Somewhere between the first acknowledgements and the end of the batch.
                try await Task.sleep(for: .milliseconds(100 + Int(generator.next() % 1500)))
                mesh.mesh.kill(registry, signal: SIGKILL)
                for (id, sha) in try await ingest.value { acknowledged[id] = sha }
                try await mesh.mesh.restart(registry)
                try assertAcknowledgedPresent(acknowledged, blobRoot: blobRoot, database: database)
            }
            #expect(acknowledged.count > 200, "the kills came too early to test anything")
            try assertStoreConsistent(blobRoot: blobRoot, database: database, expectedRecords: nil)
        }

        /// Every acknowledged image has its record, with its digest, and its blob hashes right.
        private func assertAcknowledgedPresent(_ acknowledged: [String: String], blobRoot: String, database: String) throws {
            let queue = try DatabaseQueue(path: database, configuration: { var c = Configuration(); c.readonly = true; return c }())
            let stored = try queue.read { db in
                Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, sha256 FROM image").map { ($0["id"] as String, $0["sha256"] as String) })
            }
            for (id, sha) in acknowledged {
                #expect(stored[id] == sha, "acknowledged image \(id) is missing or changed after a kill -9")
                let path = "\(blobRoot)/sha256/\(sha.prefix(2))/\(sha.dropFirst(2).prefix(2))/\(sha)"
                #expect(try sha256(ofFile: path) == sha, "the blob of acknowledged image \(id) is damaged")
            }
        }

        private func assertStoreConsistent(blobRoot: String, database: String, expectedRecords: Int?) throws {
            for path in try BlobTree(root: blobRoot).files {
                let name = String(path.split(separator: "/").last!)
                #expect(try sha256(ofFile: "\(blobRoot)/sha256/\(path)") == name, "blob \(name) does not hash to its name")
            }
            let queue = try DatabaseQueue(path: database, configuration: { var c = Configuration(); c.readonly = true; return c }())
            let rows = try queue.read { db in try Row.fetchAll(db, sql: "SELECT id, sha256, size_bytes FROM image") }
            if let expectedRecords { #expect(rows.count == expectedRecords) }
            for row in rows {
                let sha: String = row["sha256"]
                let size: Int64 = row["size_bytes"]
                let path = "\(blobRoot)/sha256/\(sha.prefix(2))/\(sha.dropFirst(2).prefix(2))/\(sha)"
                #expect(FileManager.default.fileExists(atPath: path), "record \(row["id"] as String) points at a missing blob")
                #expect(try sha256(ofFile: path) == sha)
                #expect((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int).map(Int64.init) == size)
            }
        }

        /// Retries while the gateway reconnects to a restarted backend.
        private func retrying(_ body: () async throws -> Void) async throws {
            for attempt in 1... {
                do { return try await body() } catch where code(of: error) == .unavailable && attempt < 50 {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
    }
}
