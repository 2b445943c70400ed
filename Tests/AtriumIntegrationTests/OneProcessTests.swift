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
import AtriumAssembly

extension IntegrationTests {
    /// `atrium serve all`: every service in one process, calling each other in-process. The same services and
    /// contracts as the split mesh; these check that the in-process wiring carries them end to end.
    @Suite("One process (atrium serve all)", .serialized)
    struct OneProcessTests {
        /// A 512×512 CT slice of `series`, as a modality sends it.
        static func slice(_ n: Int, series: String) throws -> Data {
            var fixture = DICOMFixture(sopInstanceUID: "\(series).\(n)", patientID: "P-ONE", seed: UInt64(n))
            fixture.size = 512
            fixture.instanceNumber = n
            fixture.slicePosition = Double(n) * 1.25
            fixture.seriesInstanceUID = series
            fixture.rescale = ("1", "-1024")
            return Data(try Fixtures.dicom(fixture))
        }

        @Test("a 512×512 CT series is registered, listed, fetched byte-identical and losslessly, processed, shared and metered, all in one process")
        func endToEnd() async throws {
            let mesh = try await TestMesh(split: false)
            defer { mesh.stop() }
            #expect(mesh.mesh.endpoints.count == 1, "one process")
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let clinic = try await mesh.createSubscriber(name: "Clinic", kind: .hospital)
            let series = "1.2.999.70.1"
            let slices = try (1...24).map { try Self.slice($0, series: series) }
            let directory = mesh.directory.path
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                var ids: [String] = []
                for bytes in slices { ids.append(try await atrium.registerImage(bytes: bytes).imageID) }
                #expect(Set(ids).count == 24)
                // Registering the same instance again is a no-op with the same ID.
                #expect(try await atrium.registerImage(bytes: slices[0]).imageID == ids[0])
                let listed = try await atrium.images(matching: .with { $0.seriesInstanceUid = series })
                #expect(Set(listed.map(\.imageID)) == Set(ids))
                // Byte-identical as stored, and decoded to the same pixels through JPEG-LS (the SDK checks each digest).
                for (index, id) in ids.enumerated().prefix(6) {
                    let path = "\(directory)/\(id).dcm"
                    let digest = try await atrium.fetchImage(id: id, to: path)
                    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == slices[index])
                    #expect(digest.sha256 == Hex.encode(SHA256.hash(data: slices[index])))
                    _ = try await atrium.fetchImage(id: id, to: "\(path).jls", encoding: .jpegLs)
                }
                // Processing runs in the same process, reads the stored series and registers its results.
                let outcome = try await atrium.process(ProcessingRequest(
                    operation: .with { $0.smooth = .with { $0.sigma = 1.5 } },
                    inputs: .series(series),
                    destinations: [clinic.id]
                ))
                #expect(outcome.results.count == 24)
                #expect(outcome.results.allSatisfy { !$0.imageID.isEmpty })
                // Metered through the in-process security link (the usage outbox is sent in batches).
                let deadline = ContinuousClock.now + .seconds(10)
                var usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                while (usage.deliveries < 12 || usage.processedImages < 24) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
                }
                #expect(usage.deliveries == 12 && usage.processedImages == 24, "\(usage)")
                #expect(usage.storageUsedBytes >= UInt64(slices.reduce(0) { $0 + $1.count }))
            }
            // The destination sees the results, not their sources, and got one inbox entry.
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: clinic.key)) { atrium in
                let deadline = ContinuousClock.now + .seconds(10)
                var entries = try await atrium.delivery.listInbox(.init(), metadata: atrium.metadata).entries
                while entries.isEmpty && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    entries = try await atrium.delivery.listInbox(.init(), metadata: atrium.metadata).entries
                }
                #expect(entries.count == 1 && entries.first?.images.count == 24)
                let visible = try await atrium.images(matching: .init())
                #expect(visible.count == 24 && visible.allSatisfy { $0.derivedFromImageIds.count == 1 })
                let result = try #require(visible.first)
                _ = try await atrium.fetchImage(id: result.imageID, to: "\(directory)/result.dcm")
                let source = try #require(result.derivedFromImageIds.first)
                await #expect { _ = try await atrium.image(id: source) } throws: { code(of: $0) == .notFound }
            }
        }

        @Test("the contract holds in one process: no key, a missing role, someone else's image, an unknown ID, a malformed object")
        func refusals() async throws {
            let mesh = try await TestMesh(split: false)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let patient = try await mesh.createSubscriber(name: "Patient", kind: .individual, patientIDs: ["P-OTHER"])
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.registerImage(bytes: Self.slice(1, series: "1.2.999.71.1")).imageID
            }
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: "")) { try await $0.image(id: image) }
            } throws: { code(of: $0) == .unauthenticated }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: patient.key)) { atrium in
                await #expect { _ = try await atrium.registerImage(bytes: Self.slice(2, series: "1.2.999.71.1")) } throws: {
                    code(of: $0) == .permissionDenied && "\($0)".contains("register")
                }
                await #expect { _ = try await atrium.image(id: image) } throws: { code(of: $0) == .notFound }
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                await #expect { _ = try await atrium.image(id: "img_doesnotexist") } throws: { code(of: $0) == .notFound }
                await #expect { _ = try await atrium.registerImage(bytes: Data("not a DICOM file".utf8)) } throws: { code(of: $0) == .invalidArgument }
                // The refusals left the process serving.
                let still = try await atrium.image(id: image)
                #expect(still.imageID == image)
            }
        }

        @Test("the process listens on the gateway's two ports and the data plane only: the services inside talk without sockets")
        func onlyTheGatewayListens() async throws {
            let mesh = try await TestMesh(split: false)
            defer { mesh.stop() }
            let pid = try #require(mesh.mesh.processIdentifier(of: .whole))
            // The data plane reports its port beside the gateway's; the suite's time limit ends a wait that hangs.
            var dataPlane = mesh.mesh.dataPlaneAddress
            while dataPlane == nil {
                try await Task.sleep(for: .milliseconds(50))
                dataPlane = mesh.mesh.dataPlaneAddress
            }
            let ports = try ListeningPorts.of(pid)
            #expect(ports == [mesh.mesh.gatewayAddress.port, mesh.mesh.gatewayMutualTLSAddress.port, dataPlane!.port], "\(ports)")
        }
    }
}

/// The TCP ports a process listens on, from /proc: its socket inodes matched against the kernel's listening sockets.
enum ListeningPorts {
    static func of(_ pid: Int32) throws -> Set<Int> {
        var inodes: Set<String> = []
        for fd in try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") {
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"), target.hasPrefix("socket:[") {
                inodes.insert(String(target.dropFirst("socket:[".count).dropLast()))
            }
        }
        var ports: Set<Int> = []
        for table in ["/proc/\(pid)/net/tcp", "/proc/\(pid)/net/tcp6"] {
            guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                // local_address is HEX_IP:HEX_PORT; st 0A is LISTEN; the inode is field 9.
                guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])),
                    let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) })
                else { continue }
                ports.insert(port)
            }
        }
        return ports
    }
}
