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
import Synchronization
import Testing
import AtriumTransport
import AtriumAssembly

extension IntegrationTests {
    /// Delivery through the gateway: encodings, resume, batch visibility, acquisition conditions, printing and
    /// inboxes, against the real processes.
    @Suite("Delivery: fetch, print and inbox", .serialized)
    struct DeliveryTests {
        /// A fixture image of `size`×`size` 12-bit pixels, with a private payload so sizes differ.
        private static func image(_ n: Int, patient: String = "P-D", size: Int = 64, payload: Int = 0) throws -> Data {
            var fixture = DICOMFixture(sopInstanceUID: "1.2.999.50.\(n)", patientID: patient, seed: UInt64(n))
            fixture.size = size
            fixture.instanceNumber = n
            return Data(try Fixtures.dicom(fixture, privatePayload: payload == 0 ? [] : (0..<payload).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ n) }))
        }

        /// Every message of a raw fetch call.
        private static func fetchRaw(_ atrium: AtriumClient, _ request: Atrium_V1_FetchRequest) async throws -> [Atrium_V1_FetchResponse] {
            try await atrium.delivery.fetch(request: ClientRequest(message: request, metadata: atrium.metadata)) { response in
                var all: [Atrium_V1_FetchResponse] = []
                for try await message in response.messages { all.append(message) }
                return all
            }
        }

        /// Polls the caller's usage until `deliveries` reaches `count` (the meter sends in batches), then checks
        /// it stays there.
        private static func expectDeliveries(_ count: UInt64, _ atrium: AtriumClient) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            var usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
            while usage.deliveries < count && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
            }
            try await Task.sleep(for: .milliseconds(500))
            usage = try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
            #expect(usage.deliveries == count)
        }

        @Test("every encoding delivers valid DICOM with the original's pixels; variants are transcoded once; original is byte-identical")
        func encodings() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let source = try Self.image(1, size: 96, payload: 1000)
            let output = try TemporaryDirectory(prefix: "atrium-fetch")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let id = try await atrium.registerImage(bytes: source).imageID
                var delivered: [Atrium_V1_Encoding: FetchedImage] = [:]
                for encoding in [Atrium_V1_Encoding.original, .explicitLe, .jpegLs, .deflate] {
                    let outcome = try await atrium.fetchImages([id], into: "\(output.path)/\(encoding.rawValue)", options: .init(encoding: encoding))
                    delivered[encoding] = try outcome[0].image()
                }
                #expect(try Data(contentsOf: URL(fileURLWithPath: "\(output.path)/1/\(id).dcm")) == source, "original is the stored bytes")
                // The fixture is explicit VR little endian: that encoding is the stored object itself.
                #expect(delivered[.explicitLe]?.digest.sha256 == delivered[.original]?.digest.sha256)
                #expect(delivered[.jpegLs]?.transferSyntaxUID == "1.2.840.10008.1.2.4.80" && delivered[.jpegLs]?.encoding == .jpegLs)
                #expect(delivered[.deflate]?.transferSyntaxUID == "1.2.840.10008.1.2.1.99")
                #expect((delivered[.jpegLs]?.digest.sizeBytes ?? .max) < UInt64(source.count))
                let originalPixels = try PixelDecoder.decode(DICOMReader.read([UInt8](source)))
                for encoding in [Atrium_V1_Encoding.explicitLe, .jpegLs, .deflate] {
                    let bytes = try Data(contentsOf: URL(fileURLWithPath: "\(output.path)/\(encoding.rawValue)/\(id).dcm"))
                    let pixels = try PixelDecoder.decode(DICOMReader.read([UInt8](bytes)))
                    #expect(pixels.layout == originalPixels.layout && pixels.bytes == originalPixels.bytes, "\(encoding) is bit-exact")
                }
                // An independent reader: pydicom decodes each delivered file to the same pixels, dcmdump parses it.
                let check = """
                    import sys, subprocess, numpy as np, pydicom
                    ref = pydicom.dcmread(sys.argv[1]).pixel_array
                    for path in sys.argv[2:]:
                        ds = pydicom.dcmread(path)
                        assert np.array_equal(ds.pixel_array, ref), path
                        run = subprocess.run(["dcmdump", "-q", path], capture_output=True, text=True)
                        assert run.returncode == 0 and "E:" not in run.stderr, (path, run.stderr)
                    print("ok")
                    """
                let paths = [2, 3, 4].map { "\(output.path)/\($0)/\(id).dcm" }
                let (status, text) = try runPython(check, ["\(output.path)/1/\(id).dcm"] + paths)
                #expect(status == 0 && text.contains("ok"), "\(text)")

                // A second fetch of a variant reuses the cached one: nothing new in delivery's variant store.
                let variants = "\(mesh.directory.path)/delivery/variants"
                let before = try BlobTree(root: variants).files
                #expect(before.count == 2, "one JPEG-LS and one deflated variant")
                let again = try await atrium.fetchImages([id], into: "\(output.path)/again", options: .init(encoding: .jpegLs))
                #expect(try again[0].image().digest == delivered[.jpegLs]?.digest)
                #expect(try BlobTree(root: variants).files == before)

                // Concurrent receivers of a new variant share one transcoding.
                let second = try await atrium.registerImage(bytes: Self.image(9, size: 128)).imageID
                let concurrent = try await withThrowingTaskGroup(of: String.self) { group in
                    for n in 0..<4 {
                        group.addTask {
                            let outcome = try await atrium.fetchImages([second], into: "\(output.path)/concurrent-\(n)", options: .init(encoding: .jpegLs))
                            return try outcome[0].image().digest.sha256
                        }
                    }
                    return try await group.reduce(into: Set<String>()) { $0.insert($1) }
                }
                #expect(concurrent.count == 1)
                #expect(try BlobTree(root: variants).files.count == before.count + 1)

                // A damaged variant is found when it is sent, dropped and made again; the SDK's retry gets good bytes.
                for file in try BlobTree(root: variants).files {
                    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: "\(variants)/sha256/\(file)"))
                    try handle.seek(toOffset: 200)
                    try handle.write(contentsOf: Data([0xFF, 0x00, 0xFF]))
                    try handle.close()
                }
                let healed = try await atrium.fetchImages([id], into: "\(output.path)/healed", options: .init(encoding: .jpegLs))
                #expect(try healed[0].image().digest == delivered[.jpegLs]?.digest, "transcoding is deterministic")

                // gRPC message compression, when the client asks for it, delivers the same bytes.
                var compressed = mesh.clientConfiguration(apiKey: hospital.key)
                compressed.messageCompression = true
                try await AtriumClient.with(compressed) { gzip in
                    let outcome = try await gzip.fetchImages([id], into: "\(output.path)/gzip")
                    #expect(try outcome[0].image().digest.sha256 == delivered[.original]?.digest.sha256)
                }
            }
            let log = try String(contentsOfFile: mesh.mesh.logPath(of: .init(.delivery)), encoding: .utf8)
            // JPEG-LS and deflate of the first image, JPEG-LS of the second once for four receivers, and the damaged
            // JPEG-LS variant once more.
            #expect(log.components(separatedBy: "transcoded").count - 1 == 4, "each variant is transcoded once")
        }

        @Test("every corpus object (8/16/32-bit, signed, MONOCHROME1/2, RGB, multi-frame, every stored syntax) arrives in every encoding as valid DICOM with its pixels")
        func corpusInEveryEncoding() async throws {
            let corpus = try TemporaryDirectory(prefix: "atrium-corpus")
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("AtriumDICOMTests/make_corpus.py").path
            let (made, madeOutput) = try runPython("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')", [script, corpus.path])
            #expect(made == 0, "\(madeOutput)")
            let files = try FileManager.default.contentsOfDirectory(atPath: corpus.path).filter { $0.hasSuffix(".dcm") }.sorted()
            #expect(files.count >= 20)
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let output = try TemporaryDirectory(prefix: "atrium-corpus-fetch")
            var lines: [String] = []
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                var ids: [String: String] = [:]
                for file in files {
                    // dcmtk's conversions keep their source's SOP instance UID: each is registered as a new version.
                    let receipt = try await atrium.register(header: .with { $0.format = .dicomPart10; $0.supersede = true }, file: "\(corpus.path)/\(file)")
                    ids[receipt.imageID] = file
                }
                for encoding in [Atrium_V1_Encoding.original, .explicitLe, .jpegLs, .deflate] {
                    let directory = "\(output.path)/\(encoding.rawValue)"
                    for outcome in try await atrium.fetchImages(Array(ids.keys), into: directory, options: .init(encoding: encoding)) {
                        let image = try outcome.image()
                        // source, delivered file, the syntax delivered, the one asked for
                        lines.append("\(corpus.path)/\(ids[image.imageID]!)\t\(directory)/\(image.imageID).dcm\t\(image.transferSyntaxUID)\t\(encoding.rawValue)")
                        if encoding == .original {
                            #expect(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(image.imageID).dcm")) == Data(contentsOf: URL(fileURLWithPath: "\(corpus.path)/\(ids[image.imageID]!)")))
                        }
                    }
                }
            }
            let list = "\(output.path)/list.tsv"
            try lines.joined(separator: "\n").write(toFile: list, atomically: true, encoding: .utf8)
            // pydicom reads each delivered file; its pixels equal the stored object's (where pydicom decodes the
            // stored syntax); dcmdump parses it. Non-original encodings name the syntax they were asked for, or
            // explain the fallback in the stream (checked here: only the 32-bit object falls back from JPEG-LS).
            let check = """
                import sys, subprocess, numpy as np, pydicom
                wanted = {"2": "1.2.840.10008.1.2.1", "3": "1.2.840.10008.1.2.4.80", "4": "1.2.840.10008.1.2.1.99"}
                def pixels(ds):
                    # The values as Bits Stored and Pixel Representation define them (pydicom sign-extends JPEG-LS
                    # samples from the codestream's precision, native ones not at all).
                    arr = ds.pixel_array
                    if int(ds.get("PixelRepresentation", 0)) == 1:
                        shift = arr.dtype.itemsize * 8 - int(ds.BitsStored)
                        if shift:
                            arr = (arr << shift) >> shift
                    return arr
                checked = 0
                for line in open(sys.argv[1]).read().splitlines():
                    source, delivered, syntax, encoding = line.split("\\t")
                    ds = pydicom.dcmread(delivered)
                    assert ds.file_meta.TransferSyntaxUID == syntax, (delivered, syntax)
                    if encoding in wanted and syntax != wanted[encoding]:
                        assert encoding == "3" and ds.BitsAllocated not in (8, 16), ("unexpected fallback", source, syntax)
                    run = subprocess.run(["dcmdump", "-q", delivered], capture_output=True)
                    errors = run.stderr.decode("utf-8", "replace")
                    assert run.returncode == 0 and "E:" not in errors, (delivered, errors)
                    original = pydicom.dcmread(source, force=True)
                    if "PixelData" in original:
                        try:
                            reference = pixels(original)
                        except Exception:
                            continue
                        assert np.array_equal(pixels(ds), reference), (source, encoding)
                        checked += 1
                print("ok", checked)
                """
            let (status, text) = try runPython(check, [list])
            #expect(status == 0 && text.contains("ok"), "\(text)")
            let compared = Int(text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").last ?? "") ?? 0
            #expect(compared >= 3 * files.count, "pixels compared for \(compared) deliveries")
        }

        @Test("a fetch cut at a random byte resumes to the identical file and counts one delivery; the SDK resumes on its own")
        func resume() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let source = try Self.image(2, payload: 3 << 20)
            let output = try TemporaryDirectory(prefix: "atrium-resume")
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let id = try await atrium.registerImage(bytes: source).imageID
                // Cut: read the raw stream up to a random byte, then drop the call; keep those bytes as a .part file.
                let cut = Int.random(in: 1..<(source.count - 1))
                let fetchID = "resume-test-1"
                let partial = try await atrium.delivery.fetch(
                    request: ClientRequest(message: .with { $0.imageIds = [id]; $0.fetchID = fetchID; $0.chunkSize = 64 << 10 }, metadata: atrium.metadata)
                ) { response in
                    var bytes = Data()
                    for try await message in response.messages {
                        if case .chunk(let chunk) = message.part { bytes.append(chunk.data) }
                        if bytes.count >= cut { break }
                    }
                    return bytes.prefix(cut)
                }
                #expect(partial == source.prefix(cut))
                let path = "\(output.path)/\(id).dcm"
                try partial.write(to: URL(fileURLWithPath: path + ".part"))
                // The SDK finds the .part file and asks only for the rest, under the same fetch ID.
                let outcome = try await atrium.fetchImages([id], into: output.path, options: .init(fetchID: fetchID))
                let image = try outcome[0].image()
                #expect(image.receivedBytes == UInt64(source.count - cut), "only the rest was sent")
                #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == source)
                #expect(!FileManager.default.fileExists(atPath: path + ".part"))
                try await Self.expectDeliveries(1, atrium)

                // The SDK resumes on its own when delivery dies mid-stream and comes back.
                let killed = Counter()
                async let automatic = atrium.fetchImages([id], into: "\(output.path)/auto", options: .init(maxAttempts: 10)) { progress in
                    if progress.receivedBytes > 1 << 20 && killed.increment() == 1 { mesh.mesh.kill(.init(.delivery)) }
                }
                while killed.value == 0 { try await Task.sleep(for: .milliseconds(20)) }
                try await mesh.mesh.restart(.init(.delivery))
                let resumed = try await automatic[0].image()
                #expect(try Data(contentsOf: URL(fileURLWithPath: "\(output.path)/auto/\(id).dcm")) == source)
                #expect(resumed.receivedBytes == UInt64(source.count), "each byte arrived once: it resumed, not restarted")
                try await Self.expectDeliveries(2, atrium)
            }
        }

        @Test("a batch with an image the caller may not see delivers the others and refuses that one with NOT_FOUND")
        func batchVisibility() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let other = try await mesh.createSubscriber(name: "Other", kind: .hospital)
            let mine = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await (3...5).asyncMap { try await atrium.registerImage(bytes: Self.image($0)).imageID }
            }
            let theirs = try await AtriumClient.with(mesh.clientConfiguration(apiKey: other.key)) { atrium in
                try await atrium.registerImage(bytes: Self.image(6, patient: "P-OTHER")).imageID
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let ids = [mine[0], theirs, mine[1], mine[2]]
                let messages = try await Self.fetchRaw(atrium, .with { $0.imageIds = ids; $0.encoding = .jpegLs })
                let ends = messages.compactMap { if case .end(let end) = $0.part { end.imageID } else { nil } }
                let refused = messages.compactMap { if case .refused(let item) = $0.part { item } else { nil } }
                #expect(ends == mine, "the visible images arrive, in order")
                #expect(refused.map(\.id) == [theirs] && refused.first?.code == Int32(Status.Code.notFound.rawValue))
                let outcomes = try await atrium.fetchImages(ids, into: try TemporaryDirectory(prefix: "atrium-batch").path)
                #expect(outcomes.compactMap { if case .refused(let id, .notFound, _) = $0 { id } else { nil } } == [theirs])
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [] }) } throws: { code(of: $0) == .invalidArgument }
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [mine[0]]; $0.resumeOffsets = [mine[0]: 1 << 40] }) } throws: {
                    code(of: $0) == .invalidArgument
                }
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [mine[0]]; $0.fetchID = "no spaces" }) } throws: {
                    code(of: $0) == .invalidArgument
                }
            }
        }

        @Test("acquisition conditions come with their history; the CLI writes a JSON protocol file")
        func conditions() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let id = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let id = try await atrium.registerImage(bytes: Self.image(7)).imageID
                _ = try await atrium.registry.setAcquisitionConditions(
                    .with { $0.imageID = id; $0.conditions = .with { $0.ct = .with { $0.kvp = 100 } }; $0.reason = "protocol change" },
                    metadata: atrium.metadata
                )
                let conditions = try await atrium.delivery.getAcquisitionConditions(.with { $0.imageID = id }, metadata: atrium.metadata)
                #expect(conditions.modality == "CT" && conditions.deviceID == "CT-1")
                #expect(conditions.current.ct.kvp == 100 && conditions.current.ct.sliceThicknessMm == 1.25)
                #expect(conditions.history.map(\.version) == [1, 2] && conditions.history[0].conditions.ct.kvp == 120)
                #expect(conditions.history[1].reason == "protocol change")
                await #expect { try await atrium.delivery.getAcquisitionConditions(.with { $0.imageID = "img_nope" }, metadata: atrium.metadata) } throws: {
                    code(of: $0) == .notFound
                }
                return id
            }
            let file = "\(mesh.directory.path)/protocol.json"
            let run = try AtriumBinary.execute(
                ["images", "conditions", id, "--protocol", file, "--gateway", "\(mesh.mesh.gatewayAddress)", "--ca", "\(mesh.pkiDirectory)/ca.pem", "--api-key", hospital.key]
            )
            #expect(run.status == 0, "\(run.output)")
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any]
            #expect(json?["format"] as? String == "atrium.acquisition-protocol/v1" && json?["imageId"] as? String == id)
            #expect(json?["conditionsVersion"] as? Int == 2 && json?["modality"] as? String == "CT")
            let ct = (json?["conditions"] as? [String: Any])?["ct"] as? [String: Any]
            #expect(ct?["kvp"] as? Double == 100)
        }

        @Test("a print job returns at once; the printer agent composes its sheet; a printer fetches only its open jobs' images")
        func printing() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let printer = try await mesh.createSubscriber(name: "Film printer", kind: .printer)
            let otherPrinter = try await mesh.createSubscriber(name: "Other printer", kind: .printer)
            let other = try await mesh.createSubscriber(name: "Other", kind: .hospital)
            // Six images, two of them large: submitting never touches image bytes.
            var sources: [Data] = []
            for n in 0..<7 { sources.append(try Self.image(20 + n, size: 32 + 8 * n, payload: n < 2 ? 8 << 20 : 0)) }
            let windows: [Atrium_V1_Window] = (0..<6).map { n in .with { $0.center = 1000 + Double(n) * 300; $0.width = 2000 } }
            let box = Atrium_V1_FilmBox.with {
                $0.imageDisplayFormat = "STANDARD\\2,3"
                $0.filmSizeID = "14INX17IN"
                $0.filmOrientation = "PORTRAIT"
                $0.magnificationType = "BILINEAR"
                $0.windows = windows
            }
            let theirs = try await AtriumClient.with(mesh.clientConfiguration(apiKey: other.key)) { try await $0.registerImage(bytes: Self.image(40, patient: "P-X")).imageID }
            let (ids, jobs) = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let ids = try await sources.asyncMap { try await atrium.registerImage(bytes: $0).imageID }
                let request = Atrium_V1_SubmitPrintJobRequest.with { $0.printerID = printer.id; $0.filmBox = box; $0.imageIds = Array(ids.prefix(6)); $0.copies = 2 }
                // Submitting looks up the index only, never image bytes (two of these are 8 MB): with every stored
                // blob moved out of reach, the jobs are still accepted. (How fast it returns is `make bench`'s
                // question: it prints the SubmitPrintJob p50 and p99.)
                let blobs = "\(mesh.directory.path)/registry/blobs", aside = blobs + ".aside"
                try FileManager.default.moveItem(atPath: blobs, toPath: aside)
                var jobs: [Atrium_V1_PrintJob] = []
                do {
                    for _ in 0..<5 { jobs.append(try await atrium.delivery.submitPrintJob(request, metadata: atrium.metadata)) }
                } catch {
                    try FileManager.default.moveItem(atPath: aside, toPath: blobs)
                    throw error
                }
                try FileManager.default.moveItem(atPath: aside, toPath: blobs)
                #expect(jobs.allSatisfy { $0.state == .pending && $0.printerID == printer.id && $0.copies == 2 })
                jobs = Array(jobs.prefix(3))
                // Refusals: the layout, the printer, the images.
                for (change, expected) in [
                    ({ (r: inout Atrium_V1_SubmitPrintJobRequest) in r.filmBox.imageDisplayFormat = "ROW\\2" }, RPCError.Code.invalidArgument),
                    ({ $0.filmBox.imageDisplayFormat = "STANDARD\\1,2" }, .invalidArgument),
                    ({ $0.filmBox.filmSizeID = "99INX99IN" }, .invalidArgument),
                    ({ $0.filmBox.windows = [] ; $0.filmBox.windows.append(.with { $0.width = 0 }) }, .invalidArgument),
                    ({ $0.printerID = "sub_nobody" }, .notFound),
                    ({ $0.printerID = other.id }, .notFound),
                    ({ $0.filmBox.windows = []; $0.imageIds[5] = theirs }, .notFound),
                ] as [((inout Atrium_V1_SubmitPrintJobRequest) -> Void, RPCError.Code)] {
                    var bad = request
                    change(&bad)
                    await #expect { try await atrium.delivery.submitPrintJob(bad, metadata: atrium.metadata) } throws: { code(of: $0) == expected }
                }
                return (ids, jobs)
            }
            // The printer's capability: its open job's images, nothing else.
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: printer.key)) { atrium in
                let allowed = try await Self.fetchRaw(atrium, .with { $0.imageIds = [ids[0], ids[6]]; $0.printJobID = jobs[0].jobID })
                #expect(allowed.contains { if case .end(let end) = $0.part { end.imageID == ids[0] } else { false } })
                #expect(allowed.contains { if case .refused(let item) = $0.part { item.id == ids[6] && item.code == 5 } else { false } })
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [ids[0]] }) } throws: { code(of: $0) == .permissionDenied }
                let seen = try await atrium.delivery.getPrintJob(.with { $0.jobID = jobs[0].jobID }, metadata: atrium.metadata)
                #expect(seen.submitterID == hospital.id)
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: otherPrinter.key)) { atrium in
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [ids[0]]; $0.printJobID = jobs[0].jobID }) } throws: { code(of: $0) == .notFound }
                await #expect { try await atrium.delivery.getPrintJob(.with { $0.jobID = jobs[0].jobID }, metadata: atrium.metadata) } throws: { code(of: $0) == .notFound }
            }

            // The printer agent prints the first two jobs, then stops.
            let out = try TemporaryDirectory(prefix: "atrium-films")
            let run = try AtriumBinary.execute([
                "printer", "run", "--out", out.path, "--dpi", "50", "--count", "2",
                "--gateway", "\(mesh.mesh.gatewayAddress)", "--ca", "\(mesh.pkiDirectory)/ca.pem", "--api-key", printer.key,
            ])
            #expect(run.status == 0, "\(run.output)")
            let layout = try FilmLayout(imageDisplayFormat: "STANDARD\\2,3", filmSizeID: "14INX17IN", orientation: "PORTRAIT", magnificationType: "BILINEAR")
            let files = try sources.prefix(6).map { try DICOMReader.read([UInt8]($0)) }
            let expected = try FilmSheet.png(layout: layout, images: files, windows: windows.map { FilmWindow(center: $0.center, width: $0.width) }, dpi: 50)
            for job in jobs.prefix(2) {
                let sheet = try Data(contentsOf: URL(fileURLWithPath: "\(out.path)/\(job.jobID).png"))
                #expect(sheet == Data(expected), "the agent's sheet is the 2x3 composition of the six images")
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                let printed = try await atrium.delivery.getPrintJob(.with { $0.jobID = jobs[0].jobID }, metadata: atrium.metadata)
                #expect(printed.state == .printed && printed.hasCompletedAt)
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: printer.key)) { atrium in
                await #expect { try await Self.fetchRaw(atrium, .with { $0.imageIds = [ids[0]]; $0.printJobID = jobs[0].jobID }) } throws: {
                    code(of: $0) == .failedPrecondition
                }
                // The third job fails, with its reason; a closed job cannot be completed again.
                await #expect { try await atrium.delivery.completePrintJob(.with { $0.jobID = jobs[2].jobID }, metadata: atrium.metadata) } throws: {
                    code(of: $0) == .invalidArgument
                }
                let failed = try await atrium.delivery.completePrintJob(.with { $0.jobID = jobs[2].jobID; $0.failureReason = "out of film" }, metadata: atrium.metadata)
                #expect(failed.state == .failed && failed.failureReason == "out of film")
                await #expect { try await atrium.delivery.completePrintJob(.with { $0.jobID = jobs[2].jobID; $0.printed = true }, metadata: atrium.metadata) } throws: {
                    code(of: $0) == .failedPrecondition
                }
            }
        }

        @Test("a share grant puts a notice in the receiver's inbox, once")
        func shareNotice() async throws {
            let mesh = try await TestMesh(split: false, processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let receiver = try await mesh.createSubscriber(name: "Receiver", kind: .hospital)
            let grant = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.registry.grantShare(.with { $0.receiverID = receiver.id; $0.patientID = "P-D" }, metadata: atrium.metadata)
            }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: receiver.key)) { atrium in
                var entries: [Atrium_V1_InboxEntry] = []
                let deadline = ContinuousClock.now + .seconds(10)
                while entries.isEmpty && ContinuousClock.now < deadline {
                    entries = try await atrium.delivery.listInbox(.init(), metadata: atrium.metadata).entries
                    if entries.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(entries.count == 1)
                #expect(entries.first?.kind == "share.granted" && entries.first?.source == hospital.id)
                #expect(entries.first?.message.contains(grant.grantID) == true && entries.first?.message.contains("patient P-D") == true)
            }
        }

        @Test("the inbox keeps entries until acknowledged; a watcher killed mid-stream misses none and gets none twice after an ack")
        func inbox() async throws {
            let mesh = try await TestMesh(processingInstances: 1)
            defer { mesh.stop() }
            let hospital = try await mesh.createSubscriber(name: "Hospital", kind: .hospital)
            let ids = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await (60..<63).asyncMap { try await atrium.registerImage(bytes: Self.image($0)).imageID }
            }
            // Processing's side: DeliveryInternal with processing's certificate.
            func deliver(_ n: Int, key: String? = nil) async throws -> UInt64 {
                try await ClientFactory.withClient(to: mesh.mesh.address(of: .init(.delivery)), security: .mutualTLS(.service(.processing, in: mesh.pkiDirectory))) { client in
                    let response = try await Atrium_V1_DeliveryInternal.Client(wrapping: client).deliver(.with {
                        $0.recipientIds = [hospital.id]
                        $0.entryKey = key ?? "result-\(n)"
                        $0.entry = .with {
                            $0.kind = "processing.result"
                            $0.jobID = "job-\(n)"
                            $0.message = "result \(n)"
                            $0.images = [.with { $0.imageID = ids[n % 3] }]
                        }
                    })
                    return response.cursors[hospital.id] ?? 0
                }
            }
            for n in 1...6 { #expect(try await deliver(n) == UInt64(n)) }
            #expect(try await deliver(99, key: "result-2") == 2, "the same entry key is delivered once")
            let directory = try TemporaryDirectory(prefix: "atrium-inbox")
            let arguments = [
                "inbox", "watch", "--fetch-to", directory.path,
                "--gateway", "\(mesh.mesh.gatewayAddress)", "--ca", "\(mesh.pkiDirectory)/ca.pem", "--api-key", hospital.key,
            ]
            // The first watcher is killed after three entries.
            let first = try LineProcess(AtriumBinary.path, arguments)
            try await first.waitFor(timeout: .seconds(30)) { $0.count >= 3 }
            first.kill()
            let acknowledged = try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                try await atrium.delivery.listInbox(.init(), metadata: atrium.metadata).entries.first.map { $0.cursor - 1 } ?? 0
            }
            #expect(acknowledged >= 2, "each handled entry was acknowledged")
            for n in 7...9 { _ = try await deliver(n) }
            // The second watcher resumes after the acknowledgement, rides out a delivery restart, and gets the rest.
            let second = try LineProcess(AtriumBinary.path, arguments + ["--count", "\(12 - Int(acknowledged))"])
            try await second.waitFor(timeout: .seconds(30)) { _ in second.acknowledged.last == 9 }
            // Delivery ends open watch streams at SIGTERM rather than waiting for them: the restart returns (a delivery
            // that waited would hang here until the suite's time limit).
            try await mesh.mesh.restart(.init(.delivery))
            for n in 10...12 { _ = try await deliver(n) }
            try await second.waitForExit(timeout: .seconds(60))
            let firstCursors = first.cursors, secondCursors = second.cursors
            #expect(Set(firstCursors + secondCursors) == Set(1...12), "every entry arrived: \(firstCursors) then \(secondCursors)")
            #expect(secondCursors.allSatisfy { $0 > acknowledged }, "nothing acknowledged arrives twice")
            #expect(secondCursors == Array((acknowledged + 1)...12))
            for id in ids { #expect(FileManager.default.fileExists(atPath: "\(directory.path)/\(id).dcm")) }
            try await AtriumClient.with(mesh.clientConfiguration(apiKey: hospital.key)) { atrium in
                #expect(try await atrium.delivery.listInbox(.init(), metadata: atrium.metadata).entries.isEmpty)
                let all = try await atrium.delivery.listInbox(.with { $0.afterCursor = 1 }, metadata: atrium.metadata)
                #expect(all.entries.map(\.cursor) == Array(2...12) && all.entries.first?.jobID == "job-2")
                #expect(try await atrium.delivery.ackInbox(.with { $0.upToCursor = 1000 }, metadata: atrium.metadata).acknowledgedCursor == 12)
            }
            await #expect {
                try await ClientFactory.withClient(to: mesh.mesh.address(of: .init(.delivery)), security: .mutualTLS(.service(.processing, in: mesh.pkiDirectory))) { client in
                    try await Atrium_V1_DeliveryInternal.Client(wrapping: client).deliver(.with {
                        $0.recipientIds = ["sub_nobody"]; $0.entryKey = "x"; $0.entry = .with { $0.kind = "processing.result" }
                    })
                }
            } throws: { code(of: $0) == .notFound }
        }
    }
}

/// Runs a Python script with arguments; returns (status, output).
func runPython(_ script: String, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// A thread-safe counter for callbacks.
final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() -> Int { count.withLock { $0 += 1; return $0 } }
    var value: Int { count.withLock { $0 } }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

/// A child process whose standard output is read line by line as it runs (the CLI's long-running agents).
final class LineProcess: @unchecked Sendable {
    private let process: Process
    private let output = Lines()

    private final class Lines: Sendable {
        let value = Mutex<[String]>([])
    }

    init(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        self.process = process
        // Ends with this test process.
        Lifeline.tie(process)
        let output = self.output
        let handle = pipe.fileHandleForReading
        try process.run()
        Thread.detachNewThread {
            var buffer = Data()
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                buffer.append(data)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                    buffer.removeSubrange(buffer.startIndex...newline)
                    output.value.withLock { $0.append(line) }
                }
            }
        }
    }

    /// The cursors of the inbox entries printed so far (lines that start with a number).
    var cursors: [UInt64] {
        output.value.withLock { $0 }.compactMap { line in line.split(separator: " ").first.flatMap { UInt64($0) } }
    }

    /// The cursors the watcher reported acknowledged (`  acknowledged N` lines).
    var acknowledged: [UInt64] {
        output.value.withLock { $0 }.compactMap { line in
            line.hasPrefix("  acknowledged ") ? UInt64(line.dropFirst("  acknowledged ".count)) : nil
        }
    }

    /// Waits until `done(cursors)` holds.
    func waitFor(timeout: Duration, _ done: ([UInt64]) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !done(cursors) {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func waitForExit(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill()
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
