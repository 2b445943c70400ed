import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumDICOM
import AtriumRuntime
import AtriumTesting
import Crypto
import Foundation
import GRPCCore
import SwiftProtobuf
import Testing
import AtriumTransport
import AtriumAssembly

extension IntegrationTests {
    /// The registry through the gateway: what ingest indexes, idempotency, conditions versions, raw pixels,
    /// listings and who sees what.
    @Suite("Registry: ingest, query and visibility", .serialized)
    struct RegistryTests {
        @Test("ingest indexes the object's fields, typed conditions and a thumbnail; malformed input stores nothing")
        func ingestIndexes() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.1.1", patientID: "P-100")
            fixture.modality = "MR"
            fixture.patientName = "山田^太郎"
            fixture.size = 300
            fixture.acquisition = [
                (DICOMTag(0x0018, 0x0080), .DS, "4000"), (DICOMTag(0x0018, 0x0081), .DS, "90.5"),
                (DICOMTag(0x0018, 0x0087), .DS, "3"), (DICOMTag(0x0018, 0x1314), .DS, "90"),
                (DICOMTag(0x0018, 0x0024), .SH, "*tse2d1_15"), (DICOMTag(0x0018, 0x1030), .LO, "T2 TSE AX"),
            ]
            let bytes = Data(try Fixtures.dicom(fixture))
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let receipt = try await atrium.registerImage(bytes: bytes, comment: "pre-op")
                let record = try await atrium.image(id: receipt.imageID)
                #expect(record.patientID == "P-100")
                #expect(record.patientName == "山田^太郎")
                #expect(record.modality == "MR")
                #expect(record.sopInstanceUid == "1.2.999.1.1")
                #expect(record.studyInstanceUid == fixture.studyInstanceUID && record.seriesInstanceUid == fixture.seriesInstanceUID)
                #expect(record.deviceID == "CT-1" && record.bodyPart == "CHEST" && record.comment == "pre-op")
                #expect(record.rows == 300 && record.columns == 300 && record.bitsAllocated == 16 && record.frames == 1)
                #expect(record.acquiredAt.seconds == 1_772_360_100)  // 2026-03-01 10:15:00 UTC
                #expect(record.transferSyntaxUid == "1.2.840.10008.1.2.1")
                #expect(record.instanceNumber == 1)
                #expect(record.conditions.mr.repetitionTimeMs == 4000 && record.conditions.mr.echoTimeMs == 90.5)
                #expect(record.conditions.mr.fieldStrengthT == 3 && record.conditions.mr.flipAngleDeg == 90)
                #expect(record.conditions.mr.sequenceName == "*tse2d1_15")
                #expect(record.conditions.extra["0018,1030"] == "T2 TSE AX")
                #expect(record.conditions.extra["0018,0080"] == nil, "typed attributes are not repeated in extra")
                #expect(record.conditionsVersion == 1)
                #expect(record.hasThumbnail_p)
                let thumbnail = try await atrium.registry.getThumbnail(.with { $0.imageID = receipt.imageID }, metadata: atrium.metadata)
                #expect(thumbnail.width == 128 && thumbnail.height == 128)
                #expect(thumbnail.png.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))

                // Malformed objects: INVALID_ARGUMENT naming the problem, and nothing stored.
                let blobs = "\(mesh.directory.path)/registry/blobs"
                let before = try BlobTree(root: blobs).files
                let truncated = bytes.prefix(bytes.count - 1000)
                var noSOP = try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.1.2", patientID: "P-100"))
                // Break the SOP Instance UID's value into a non-UID.
                while let range = noSOP.firstRange(of: Array("1.2.999.1.2".utf8)) {
                    noSOP.replaceSubrange(range, with: Array("not-a-uid!!".utf8))
                }
                for (bad, expected) in [(truncated, "malformed DICOM"), (Data(noSOP), "is not a UID")] {
                    await #expect {
                        try await atrium.registerImage(bytes: bad)
                    } throws: { error in
                        code(of: error) == .invalidArgument && (error as? RPCError)?.message.contains(expected) == true
                    }
                }
                #expect(try BlobTree(root: blobs).files == before)
                #expect(try FileManager.default.contentsOfDirectory(atPath: "\(blobs)/tmp").isEmpty)
            }
        }

        @Test("the same SOP instance is a no-op; other bytes are ALREADY_EXISTS unless superseding, which keeps the old version")
        func idempotencyAndSupersede() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let other = try await mesh.createSubscriber(name: "Other", kind: .hospital)
            let original = Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.2.1", patientID: "P-1", seed: 1)))
            let corrected = Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.2.1", patientID: "P-1", seed: 2)))
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let first = try await atrium.registerImage(bytes: original)
                let again = try await atrium.registerImage(bytes: original)
                #expect(again.imageID == first.imageID && again.deduplicated)
                await #expect { try await atrium.registerImage(bytes: corrected) } throws: { error in
                    code(of: error) == .alreadyExists && (error as? RPCError)?.message.contains(first.imageID) == true
                }
                let replaced = try await atrium.register(header: .with { $0.format = .dicomPart10; $0.supersede = true }, bytes: corrected)
                #expect(replaced.imageID != first.imageID)
                let new = try await atrium.image(id: replaced.imageID)
                let old = try await atrium.image(id: first.imageID)
                #expect(new.supersedesImageID == first.imageID && old.supersededByImageID == replaced.imageID)
                #expect(old.digest.sha256 == first.digest.sha256, "the old version stays readable")
                let listed = try await atrium.images()
                #expect(listed.map(\.imageID) == [replaced.imageID], "listings show the current version only")
                // Registering the corrected bytes again is now the no-op.
                #expect(try await atrium.registerImage(bytes: corrected).imageID == replaced.imageID)
            }
            // Another registrant's copy of the same SOP instance is its own image.
            let theirs = try await AtriumClient.with(mesh.clientConfiguration(apiKey: other.key)) { try await $0.registerImage(bytes: original) }
            #expect(!theirs.deduplicated)
        }

        @Test("corrected conditions are versioned, only by the registrant; the history keeps every version")
        func conditionsVersions() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let receiver = try await mesh.createSubscriber(name: "Receiver", kind: .hospital)
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.registerImage(bytes: Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.3.1", patientID: "P-3"))))
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let record = try await atrium.image(id: image.imageID)
                #expect(record.conditions.ct.kvp == 120 && record.conditions.ct.sliceThicknessMm == 1.25)
                let update = try await atrium.registry.setAcquisitionConditions(
                    .with {
                        $0.imageID = image.imageID
                        $0.conditions = .with { $0.ct = .with { $0.helicalPitch = 0.984 }; $0.extra["contrast"] = "iohexol 350" }
                        $0.reason = "pitch missing from the object"
                    },
                    metadata: atrium.metadata
                )
                #expect(update.version.version == 2)
                let current = try await atrium.registry.getImage(.with { $0.imageID = image.imageID; $0.includeConditionsHistory = true }, metadata: atrium.metadata)
                #expect(current.conditionsVersion == 2)
                #expect(current.conditions.ct.helicalPitch == 0.984 && current.conditions.ct.kvp == 120, "a correction merges over the current version")
                #expect(current.conditions.extra["contrast"] == "iohexol 350")
                #expect(current.conditionsHistory.map(\.version) == [1, 2])
                #expect(current.conditionsHistory[0].conditions.ct.helicalPitch == 0)
                #expect(current.conditionsHistory[1].reason == "pitch missing from the object" && current.conditionsHistory[1].recordedBy == hospital.id)
                let _ = try await atrium.registry.grantShare(.with { $0.receiverID = receiver.id; $0.patientID = "P-3" }, metadata: atrium.metadata)
                await #expect {
                    try await atrium.registry.setAcquisitionConditions(
                        .with { $0.imageID = image.imageID; $0.conditions = .with { $0.extra[String(repeating: "k", count: 65)] = "v" } },
                        metadata: atrium.metadata
                    )
                } throws: { code(of: $0) == .invalidArgument }
            }
            // A receiver that may see the image may not change it.
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: receiver.key)) { atrium in
                    try await atrium.registry.setAcquisitionConditions(
                        .with { $0.imageID = image.imageID; $0.conditions = .with { $0.ct.kvp = 80 } },
                        metadata: atrium.metadata
                    )
                }
            } throws: { code(of: $0) == .permissionDenied }
        }

        @Test("raw pixels are wrapped into a valid DICOM object with new UIDs, and their pixels come back exactly")
        func rawPixels() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            var generator = SplitMix64(seed: 5)
            let pixels = (0..<(64 * 48)).map { _ in Int16(truncatingIfNeeded: generator.next()) }
            let bytes = Data(pixels.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: UInt16(bitPattern: $0) >> 8)] })
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let header = Atrium_V1_RegisterHeader.with {
                    $0.format = .rawPixels
                    $0.comment = "console capture"
                    $0.raw = .with {
                        $0.rows = 48
                        $0.columns = 64
                        $0.bitsAllocated = 16
                        $0.signed = true
                        $0.photometricInterpretation = "MONOCHROME2"
                        $0.patientID = "P-RAW"
                        $0.patientName = "Suzuki^Hanako"
                        $0.modality = "DX"
                        $0.acquiredAt = .init(seconds: 1_780_000_000)
                        $0.deviceID = "DX-ROOM-2"
                        $0.bodyPart = "hand"
                    }
                    $0.conditions = .with { $0.xray = .with { $0.kvp = 55; $0.exposureMas = 2.5 } }
                }
                let receipt = try await atrium.register(header: header, bytes: bytes)
                let record = try await atrium.image(id: receipt.imageID)
                #expect(record.patientID == "P-RAW" && record.patientName == "Suzuki^Hanako" && record.modality == "DX")
                #expect(record.deviceID == "DX-ROOM-2" && record.bodyPart == "HAND" && record.comment == "console capture")
                #expect(record.acquiredAt.seconds == 1_780_000_000)
                #expect(record.rows == 48 && record.columns == 64 && record.bitsAllocated == 16)
                #expect(record.sopInstanceUid.hasPrefix("2.25.") && record.studyInstanceUid.hasPrefix("2.25."))
                #expect(record.conditions.xray.kvp == 55 && record.conditions.xray.exposureMas == 2.5)
                #expect(record.hasThumbnail_p)
                let stored = "\(mesh.directory.path)/raw.dcm"
                try await atrium.fetchImage(id: receipt.imageID, to: stored)
                let file = try DICOMReader.read(Array(try Data(contentsOf: URL(fileURLWithPath: stored))))
                let (layout, decoded) = try PixelDecoder.decode(file)
                #expect(layout.signed && layout.rows == 48 && layout.columns == 64)
                #expect(Data(decoded) == bytes)

                // A short or long pixel stream, or a bad header, is refused.
                for (raw, body) in [(header, bytes.dropLast(2)), (header, bytes + Data([1, 2]))] {
                    await #expect { try await atrium.register(header: raw, bytes: Data(body)) } throws: { code(of: $0) == .invalidArgument }
                }
                var noPatient = header
                noPatient.raw.patientID = ""
                await #expect { try await atrium.register(header: noPatient, bytes: bytes) } throws: { code(of: $0) == .invalidArgument }
            }
        }

        @Test("listings filter, page by keyset without repeats or gaps under concurrent inserts, and group studies and series")
        func listings() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            func object(_ index: Int, patient: String, study: Int, series: Int, modality: String, minute: Int) throws -> Data {
                var fixture = DICOMFixture(sopInstanceUID: "1.2.999.5.\(index)", patientID: patient, seed: UInt64(index))
                fixture.studyInstanceUID = "1.2.999.50.\(study)"
                fixture.seriesInstanceUID = "1.2.999.50.\(study).\(series)"
                fixture.modality = modality
                fixture.instanceNumber = index
                fixture.acquisitionDateTime = "2026030110\(String(format: "%02d", minute % 60))00"
                return Data(try Fixtures.dicom(fixture))
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                for index in 0..<30 {
                    let patient = index % 3 == 0 ? "P-A" : "P-B"
                    _ = try await atrium.registerImage(
                        bytes: try object(index, patient: patient, study: index % 3 == 0 ? 1 : 2, series: index % 2, modality: index % 3 == 0 ? "CT" : "MR", minute: index)
                    )
                }
                #expect(try await atrium.images(matching: .with { $0.patientID = "P-A" }).count == 10)
                #expect(try await atrium.images(matching: .with { $0.modality = "MR"; $0.seriesInstanceUid = "1.2.999.50.2.1" }).count == 10)
                let window = try await atrium.images(matching: .with {
                    $0.acquired = .with { $0.start = .init(seconds: 1_772_359_200 + 5 * 60); $0.end = .init(seconds: 1_772_359_200 + 10 * 60) }
                })
                #expect(window.map(\.instanceNumber) == [5, 6, 7, 8, 9], "the range is [start, end), in acquisition order")

                // Page through while another client inserts images that sort before and after the cursor.
                var seen: [String] = []
                var token = ""
                var inserted = 0
                repeat {
                    let page = try await atrium.registry.listImages(.with { $0.page = .with { $0.pageSize = 7; $0.pageToken = token } }, metadata: atrium.metadata)
                    seen += page.images.map(\.imageID)
                    token = page.nextPageToken
                    if inserted < 4 {
                        _ = try await atrium.registerImage(bytes: try object(100 + inserted, patient: "P-C", study: 3, series: 0, modality: "US", minute: inserted % 2 == 0 ? 0 : 59))
                        inserted += 1
                    }
                } while !token.isEmpty
                #expect(Set(seen).count == seen.count, "no image is listed twice")
                let all = try await atrium.images()
                #expect(all.count == 34)
                let original = Set(all.filter { $0.patientID != "P-C" }.map(\.imageID))
                #expect(original.isSubset(of: Set(seen)), "no image that existed before paging began is skipped")
                #expect(all.map(\.acquiredAt.seconds) == all.map(\.acquiredAt.seconds).sorted())

                // A token is bound to its filter.
                await #expect {
                    try await atrium.registry.listImages(
                        .with { $0.filter.patientID = "P-A"; $0.page = .with { $0.pageSize = 7; $0.pageToken = "aXw0fGltZ194" } },
                        metadata: atrium.metadata
                    )
                } throws: { code(of: $0) == .invalidArgument }

                let studies = try await atrium.registry.listStudies(.init(), metadata: atrium.metadata).studies
                // Ordered by UID, the one key that never changes while images arrive.
                #expect(studies.map(\.studyInstanceUid) == ["1.2.999.50.1", "1.2.999.50.2", "1.2.999.50.3"])
                let first = try #require(studies.first { $0.studyInstanceUid == "1.2.999.50.1" })
                #expect(first.imageCount == 10 && first.seriesCount == 2 && first.modalities == ["CT"] && first.patientID == "P-A")
                #expect(!first.representativeImageID.isEmpty)
                let series = try await atrium.registry.listSeries(.with { $0.filter.studyInstanceUid = "1.2.999.50.2" }, metadata: atrium.metadata).series
                #expect(series.map(\.imageCount).sorted() == [10, 10])
                #expect(series.allSatisfy { $0.modality == "MR" && $0.studyInstanceUid == "1.2.999.50.2" })
            }
        }

        @Test("visibility matrix: registrant, grantee before and after expiry or revocation, linked individual, stranger, operator")
        func visibilityMatrix() async throws {
            // Delivery keeps what the registry allowed for 1 s here (5 s by default): fetches agree with the registry
            // once that window has passed.
            let mesh = try await TestMesh(processingInstances: 1, environment: ["ATRIUM_DELIVERY_VISIBILITY_MS": "1000"])
            defer { mesh.stop() }
            let registrant = try await mesh.createSubscriber(name: "Registrant", kind: .hospital)
            let grantee = try await mesh.createSubscriber(name: "Grantee", kind: .hospital)
            let studyGrantee = try await mesh.createSubscriber(name: "Study grantee", kind: .hospital)
            let individual = try await mesh.createSubscriber(name: "Patient", kind: .individual, patientIDs: ["P-V"])
            let stranger = try await mesh.createSubscriber(name: "Stranger", kind: .hospital)
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.6.1", patientID: "P-V")
            fixture.studyInstanceUID = "1.2.999.60.1"
            let image = try await AtriumClient.with(mesh.clientConfiguration(apiKey: registrant.key)) { atrium in
                try await atrium.registerImage(bytes: Data(try Fixtures.dicom(fixture)))
            }
            let (patientGrant, _) = try await AtriumClient.with(mesh.clientConfiguration(apiKey: registrant.key)) { atrium in
                let patient = try await atrium.registry.grantShare(.with { $0.receiverID = grantee.id; $0.patientID = "P-V" }, metadata: atrium.metadata)
                let study = try await atrium.registry.grantShare(
                    .with {
                        $0.receiverID = studyGrantee.id
                        $0.studies = .with { $0.studyInstanceUids = ["1.2.999.60.1"] }
                        $0.expiresAt = .init(date: Date().addingTimeInterval(3))
                    },
                    metadata: atrium.metadata
                )
                return (patient, study)
            }

            /// Whether `key`'s subscriber sees the image through list, get, thumbnail, delivery's fetch, and the
            /// registry's internal resolve (`ResolveImage`, as delivery and processing call it on the subscriber's
            /// behalf); all five must agree.
            func sees(_ key: String?, as id: String, _ kind: Atrium_V1_SubscriberKind, patients: [String] = []) async throws -> Bool {
                var answers = try await AtriumClient.with(mesh.clientConfiguration(apiKey: key)) { atrium in
                    var answers = [try await atrium.images().contains { $0.imageID == image.imageID }]
                    for call in 0..<3 {
                        do {
                            switch call {
                            case 0: _ = try await atrium.image(id: image.imageID)
                            case 1: _ = try await atrium.registry.getThumbnail(.with { $0.imageID = image.imageID }, metadata: atrium.metadata)
                            default: _ = try await atrium.fetchImage(id: image.imageID) { _ in }
                            }
                            answers.append(true)
                        } catch let error as RPCError where error.code == .notFound {
                            answers.append(false)
                        }
                    }
                    return answers
                }
                let registry = mesh.mesh.address(of: .init(.registry))
                let read = try await ClientFactory.withClient(to: registry, security: .mutualTLS(.service(.processing, in: mesh.pkiDirectory))) { client in
                    let request = Atrium_V1_ResolveImageRequest.with {
                        $0.caller = .with { $0.subscriberID = id; $0.kind = kind; $0.patientIds = patients; $0.roles = [.receive]; $0.requestID = "matrix" }
                        $0.imageID = image.imageID
                    }
                    do {
                        return try await Atrium_V1_RegistryInternal.Client(wrapping: client).resolveImage(request).imageID == image.imageID
                    } catch let error as RPCError where error.code == .notFound {
                        return false
                    }
                }
                answers.append(read)
                #expect(Set(answers).count == 1, "list, get, thumbnail, fetch and read disagree: \(answers)")
                return answers[0]
            }
            #expect(try await sees(registrant.key, as: registrant.id, .hospital))
            #expect(try await sees(grantee.key, as: grantee.id, .hospital))
            #expect(try await sees(studyGrantee.key, as: studyGrantee.id, .hospital))
            #expect(try await sees(individual.key, as: individual.id, .individual, patients: ["P-V"]))
            #expect(try await !sees(stranger.key, as: stranger.id, .hospital))
            #expect(try await sees(nil, as: "sub_operator", .operator), "operators see everything")

            // The grantee sees the grant it received; a stranger cannot revoke it.
            let received = try await AtriumClient.with(mesh.clientConfiguration(apiKey: grantee.key)) { atrium in
                try await atrium.registry.listShares(.init(), metadata: atrium.metadata).grants
            }
            #expect(received.map(\.grantID) == [patientGrant.grantID])
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: stranger.key)) { atrium in
                    try await atrium.registry.revokeShare(.with { $0.grantID = patientGrant.grantID }, metadata: atrium.metadata)
                }
            } throws: { code(of: $0) == .notFound }
            // Revocation applies at once in the registry, and to fetches once delivery's window (1 s here) has passed:
            // a fetch begun that long after the revocation returned is refused, however slow the machine. Expiry
            // applies when it comes.
            let revoked = try await AtriumClient.with(mesh.clientConfiguration(apiKey: registrant.key)) { atrium in
                try await atrium.registry.revokeShare(.with { $0.grantID = patientGrant.grantID }, metadata: atrium.metadata)
            }
            #expect(revoked.grant.hasRevokedAt)
            try await Task.sleep(for: .milliseconds(1050))
            #expect(try await !sees(grantee.key, as: grantee.id, .hospital))
            try await Task.sleep(for: .seconds(3.2))
            #expect(try await !sees(studyGrantee.key, as: studyGrantee.id, .hospital))
            let made = try await AtriumClient.with(mesh.clientConfiguration(apiKey: registrant.key)) { atrium in
                (
                    active: try await atrium.registry.listShares(.with { $0.grantedByMe = true }, metadata: atrium.metadata).grants,
                    all: try await atrium.registry.listShares(.with { $0.grantedByMe = true; $0.includeInactive = true }, metadata: atrium.metadata).grants
                )
            }
            #expect(made.active.isEmpty && made.all.count == 2)
            // A grant to an unknown subscriber is refused.
            await #expect {
                try await AtriumClient.with(mesh.clientConfiguration(apiKey: registrant.key)) { atrium in
                    try await atrium.registry.grantShare(.with { $0.receiverID = "sub_nobody"; $0.patientID = "P-V" }, metadata: atrium.metadata)
                }
            } throws: { code(of: $0) == .notFound }
        }

        @Test("the CLI registers a directory tree concurrently with a summary, lists, shows, corrects conditions and shares")
        func commandLine() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let receiver = try await mesh.createSubscriber(name: "Receiver", kind: .hospital)
            let tree = "\(mesh.directory.path)/incoming"
            try FileManager.default.createDirectory(atPath: "\(tree)/study/series", withIntermediateDirectories: true)
            for index in 0..<6 {
                var fixture = DICOMFixture(sopInstanceUID: "1.2.999.8.\(index)", patientID: "P-CLI", seed: UInt64(index))
                fixture.instanceNumber = index
                try Data(try Fixtures.dicom(fixture)).write(to: URL(fileURLWithPath: "\(tree)/study/series/IM\(index)"))
            }
            // The same object twice, a broken file, and files the walk skips.
            try FileManager.default.copyItem(atPath: "\(tree)/study/series/IM0", toPath: "\(tree)/study/copy-of-IM0")
            try Data("not an image".utf8).write(to: URL(fileURLWithPath: "\(tree)/notes.txt"))
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(tree)/.hidden"))
            try Data("x".utf8).write(to: URL(fileURLWithPath: "\(tree)/DICOMDIR"))
            let environment = [
                "ATRIUM_GATEWAY": "\(mesh.mesh.gatewayAddress.host):\(mesh.mesh.gatewayAddress.port)",
                "ATRIUM_CA": "\(mesh.pkiDirectory)/ca.pem",
                "ATRIUM_API_KEY": hospital.key,
            ]
            func summary(_ output: String) throws -> [String: Any] {
                let line = try #require(output.split(separator: "\n").last)
                return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            }
            let (status, output) = try AtriumBinary.execute(["images", "register", "--jobs", "3", "--json", tree], environment: environment)
            #expect(status == 1, "a refused file makes the exit status 1")
            let first = try summary(output)
            #expect(first["registered"] as? Int == 6 && first["already_stored"] as? Int == 1 && first["refused"] as? Int == 1)
            let files = try #require(first["files"] as? [[String: String]])
            #expect(files.count == 8, "hidden files and DICOMDIR are skipped")
            #expect(files.first { $0["file"]?.hasSuffix("notes.txt") == true }?["reason"]?.contains("INVALID_ARGUMENT") == true)
            // Again: everything valid is now already stored.
            let again = try summary(try AtriumBinary.execute(["images", "register", "--json", tree], environment: environment).output)
            #expect(again["registered"] as? Int == 0 && again["already_stored"] as? Int == 7 && again["refused"] as? Int == 1)
            let registered = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.images() }
            #expect(registered.count == 6)
            let listed = try AtriumBinary.run(["images", "list", "--patient-id", "P-CLI", "--json"], environment: environment)
            let lines = listed.split(separator: "\n")
            #expect(lines.count == 6)
            let record = try Atrium_V1_ImageRecord(jsonString: String(lines[0]))
            #expect(record.patientID == "P-CLI")
            let shown = try AtriumBinary.run(["images", "show", record.imageID], environment: environment)
            #expect(shown.contains("P-CLI") && shown.contains("CT 120 kVp"))
            let corrected = try AtriumBinary.run(
                ["images", "conditions", record.imageID, "--set", "ct.pitch=1.375", "--set", "contrast=none", "--reason", "from the console log", "--json"],
                environment: environment
            )
            let history = try Atrium_V1_GetAcquisitionConditionsResponse(jsonString: corrected)
            #expect(history.history.count == 2 && history.current.ct.helicalPitch == 1.375 && history.current.extra["contrast"] == "none")
            let grant = try Atrium_V1_ShareGrant(
                jsonString: try AtriumBinary.run(["share", "grant", receiver.id, "--patient-id", "P-CLI", "--json"], environment: environment)
            )
            let seen = try await AtriumClient.with(mesh.clientConfiguration(apiKey: receiver.key)) { try await $0.images() }
            #expect(seen.count == 6)
            #expect(try AtriumBinary.run(["share", "list", "--granted"], environment: environment).contains(grant.grantID))
            _ = try AtriumBinary.run(["share", "revoke", grant.grantID], environment: environment)
            #expect(try await AtriumClient.with(mesh.clientConfiguration(apiKey: receiver.key)) { try await $0.images() }.isEmpty)
        }

        @Test("export streams a consistent snapshot and its blob list; restore checks the digest and the blobs, then replaces the index")
        func exportAndRestore() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let kept = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                var receipts: [Atrium_V1_RegisterResponse] = []
                for index in 0..<3 {
                    receipts.append(try await atrium.registerImage(bytes: Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.9.\(index)", patientID: "P-B", seed: UInt64(index))))))
                }
                return receipts
            }
            let registry = mesh.mesh.address(of: .init(.registry))
            let backup = ClientSecurity.mutualTLS(.service(.backup, in: mesh.pkiDirectory))
            let (snapshot, blobs, digest) = try await ClientFactory.withClient(to: registry, security: backup) { client in
                try await Atrium_V1_RegistryInternal.Client(wrapping: client).export(.with { $0.backupID = "b1" }) { response in
                    var snapshot = Data(), blobs: [String] = [], digest = Atrium_V1_Digest()
                    for try await message in response.messages {
                        switch message.part {
                        case .database(let chunk): snapshot.append(chunk.data)
                        case .blobs(let list): blobs += list.sha256
                        case .snapshotDigest(let value): digest = value
                        case nil: break
                        }
                    }
                    return (snapshot, blobs, digest)
                }
            }
            #expect(Set(blobs) == Set(kept.map(\.digest.sha256)))
            #expect(digest.sizeBytes == UInt64(snapshot.count) && digest.sha256 == Hex.encode(SHA256.hash(data: snapshot)))

            let later = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.registerImage(bytes: Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.9.9", patientID: "P-B", seed: 9))))
            }
            func restore(_ bytes: Data, digest: Atrium_V1_Digest, as service: ServiceName = .backup) async throws -> Atrium_V1_RestoreResponse {
                try await ClientFactory.withClient(to: registry, security: .mutualTLS(.service(service, in: mesh.pkiDirectory))) { client in
                    let request = StreamingClientRequest<Atrium_V1_RestoreChunk> { writer in
                        try await writer.write(.with { $0.header = .with { $0.backupID = "b1"; $0.snapshotDigest = digest } })
                        for start in stride(from: 0, to: bytes.count, by: 256 << 10) {
                            let end = min(start + (256 << 10), bytes.count)
                            try await writer.write(.with { $0.database = .with { $0.offset = UInt64(start); $0.data = bytes[start..<end] } })
                        }
                    }
                    return try await Atrium_V1_RegistryInternal.Client(wrapping: client).restore(request: request)
                }
            }
            // Only backup may restore; a snapshot that does not match its digest is refused.
            await #expect { try await restore(snapshot, digest: digest, as: .delivery) } throws: { code(of: $0) == .permissionDenied }
            var damaged = snapshot
            damaged[damaged.count / 2] ^= 0xFF
            await #expect { try await restore(damaged, digest: digest) } throws: { code(of: $0) == .invalidArgument }
            // A snapshot that references a blob the store lacks is refused, and the index is unchanged.
            let blobPath = "\(mesh.directory.path)/registry/blobs/sha256/\(blobs[0].prefix(2))/\(blobs[0].dropFirst(2).prefix(2))/\(blobs[0])"
            try FileManager.default.moveItem(atPath: blobPath, toPath: blobPath + ".away")
            await #expect { try await restore(snapshot, digest: digest) } throws: { code(of: $0) == .failedPrecondition }
            try FileManager.default.moveItem(atPath: blobPath + ".away", toPath: blobPath)
            #expect(try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.images() }.count == 4)

            let restored = try await restore(snapshot, digest: digest)
            #expect(restored.recordCount == 3)
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                #expect(try await atrium.images().map(\.imageID).sorted() == kept.map(\.imageID).sorted())
                await #expect { try await atrium.image(id: later.imageID) } throws: { code(of: $0) == .notFound }
                // The restored index is live: registration goes on.
                _ = try await atrium.registerImage(bytes: Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.9.10", patientID: "P-B", seed: 10))))
            }
        }

        @Test("processing registers a derived image for a subscriber with its provenance; unseen sources are NOT_FOUND")
        func registerForWithProvenance() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let source = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.registerImage(bytes: Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.11.1", patientID: "P-D"))))
            }
            let derived = Data(try Fixtures.dicom(DICOMFixture(sopInstanceUID: "1.2.999.11.2", patientID: "P-D", seed: 4)))
            func registerFor(_ sources: [String]) async throws -> Atrium_V1_RegisterResponse {
                let registry = mesh.mesh.address(of: .init(.registry))
                return try await ClientFactory.withClient(to: registry, security: .mutualTLS(.service(.processing, in: mesh.pkiDirectory))) { client in
                    let request = StreamingClientRequest<Atrium_V1_RegisterForRequest> { writer in
                        try await writer.write(.with {
                            $0.header = .with {
                                $0.registrant = .with { $0.subscriberID = hospital.id; $0.kind = .hospital; $0.roles = [.register]; $0.requestID = "req-1" }
                                $0.header = .with { $0.format = .dicomPart10; $0.comment = "smooth sigma=1.5"; $0.derivedFromImageIds = sources }
                            }
                        })
                        try await writer.write(.with { $0.chunk = .with { $0.offset = 0; $0.data = derived } })
                    }
                    return try await Atrium_V1_RegistryInternal.Client(wrapping: client).registerFor(request: request)
                }
            }
            await #expect { try await registerFor(["img_unknown"]) } throws: { code(of: $0) == .notFound }
            let receipt = try await registerFor([source.imageID])
            let record = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { try await $0.image(id: receipt.imageID) }
            #expect(record.registrantID == hospital.id && record.derivedFromImageIds == [source.imageID] && record.comment == "smooth sigma=1.5")
        }

        @Test("an object whose pixels are in a syntax not decoded here is stored and delivered; its thumbnail is FAILED_PRECONDITION naming the syntax")
        func undecodedSyntax() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let bytes = Self.encapsulatedObject(syntax: "1.2.840.10008.1.2.4.50", sop: "1.2.999.12.1")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let receipt = try await atrium.registerImage(bytes: bytes)
                let record = try await atrium.image(id: receipt.imageID)
                #expect(record.transferSyntaxUid == "1.2.840.10008.1.2.4.50" && record.rows == 4 && !record.hasThumbnail_p)
                await #expect { try await atrium.registry.getThumbnail(.with { $0.imageID = receipt.imageID }, metadata: atrium.metadata) } throws: { error in
                    code(of: error) == .failedPrecondition && (error as? RPCError)?.message.contains("JPEG Baseline (1.2.840.10008.1.2.4.50)") == true
                }
                let fetched = "\(mesh.directory.path)/jpeg.dcm"
                _ = try await atrium.fetchImage(id: receipt.imageID, to: fetched)
                #expect(try Data(contentsOf: URL(fileURLWithPath: fetched)) == bytes)
                // Numbers the index keeps are checked even when the pixels are not decoded.
                await #expect {
                    try await atrium.registerImage(bytes: Self.encapsulatedObject(syntax: "1.2.840.10008.1.2.4.50", sop: "1.2.999.12.2", frames: "-3"))
                } throws: { error in
                    code(of: error) == .invalidArgument && (error as? RPCError)?.message.contains("Number of Frames (0028,0008) is -3") == true
                }
            }
        }

        /// A Part 10 object in `syntax` with one encapsulated fragment (not a real codestream: stored, never decoded).
        static func encapsulatedObject(syntax: String, sop: String, frames: String? = nil) -> Data {
            var out = Data(count: 128) + Data("DICM".utf8)
            func element(_ group: UInt16, _ element: UInt16, _ vr: String, _ value: Data, into data: inout Data) {
                var value = value
                if value.count % 2 == 1 { value.append(vr == "UI" ? 0 : 0x20) }
                data += withUnsafeBytes(of: group.littleEndian) { Data($0) } + withUnsafeBytes(of: element.littleEndian) { Data($0) } + Data(vr.utf8)
                if ["OB", "OW", "SQ", "UN", "UT"].contains(vr) {
                    data += Data([0, 0]) + withUnsafeBytes(of: UInt32(value.count).littleEndian) { Data($0) }
                } else {
                    data += withUnsafeBytes(of: UInt16(value.count).littleEndian) { Data($0) }
                }
                data += value
            }
            var meta = Data()
            element(0x0002, 0x0002, "UI", Data("1.2.840.10008.5.1.4.1.1.7".utf8), into: &meta)
            element(0x0002, 0x0003, "UI", Data(sop.utf8), into: &meta)
            element(0x0002, 0x0010, "UI", Data(syntax.utf8), into: &meta)
            element(0x0002, 0x0000, "UL", withUnsafeBytes(of: UInt32(meta.count).littleEndian) { Data($0) }, into: &out)
            out += meta
            element(0x0008, 0x0016, "UI", Data("1.2.840.10008.5.1.4.1.1.7".utf8), into: &out)
            element(0x0008, 0x0018, "UI", Data(sop.utf8), into: &out)
            element(0x0008, 0x0060, "CS", Data("OT".utf8), into: &out)
            element(0x0010, 0x0020, "LO", Data("P-J".utf8), into: &out)
            element(0x0028, 0x0002, "US", Data([1, 0]), into: &out)
            element(0x0028, 0x0004, "CS", Data("MONOCHROME2".utf8), into: &out)
            if let frames { element(0x0028, 0x0008, "IS", Data(frames.utf8), into: &out) }
            element(0x0028, 0x0010, "US", Data([4, 0]), into: &out)
            element(0x0028, 0x0011, "US", Data([4, 0]), into: &out)
            element(0x0028, 0x0100, "US", Data([8, 0]), into: &out)
            element(0x0028, 0x0101, "US", Data([8, 0]), into: &out)
            element(0x0028, 0x0103, "US", Data([0, 0]), into: &out)
            // Pixel Data, undefined length: an empty offset table, one fragment, the sequence delimiter.
            out += Data([0xE0, 0x7F, 0x10, 0x00]) + Data("OB".utf8) + Data([0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
            out += Data([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0])
            out += Data([0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0]) + Data([0xFF, 0xD8, 0xFF, 0xDB, 1, 2, 0xFF, 0xD9])
            out += Data([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0])
            return out
        }
    }
}
