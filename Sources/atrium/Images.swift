import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import Foundation

/// Where the network is and who the caller is; shared by every client verb.
struct ClientOptions: ParsableArguments {
    @Option(help: "The gateway's host:port (default: $ATRIUM_GATEWAY, else localhost:7443; localhost:7444 with --identity).")
    var gateway: String?

    @Option(help: "PEM file of the CA that signed the gateway's certificate (default: $ATRIUM_CA, else ./var/pki/ca.pem).")
    var ca: String?

    @Option(help: "The subscriber's API key (default: $ATRIUM_API_KEY).")
    var apiKey: String?

    @Option(help: "A directory written by `atrium enroll`: authenticate with its client certificate instead of an API key (default: $ATRIUM_IDENTITY).")
    var identity: String?

    func configuration() throws -> AtriumClientConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let ca = self.ca ?? environment["ATRIUM_CA"] ?? "./var/pki/ca.pem"
        if let directory = identity ?? environment["ATRIUM_IDENTITY"], apiKey == nil {
            guard let enrolled = EnrolledIdentity(directory: directory) else {
                throw ValidationError("--identity: no enrolled certificate in '\(directory)'; run `atrium enroll` first")
            }
            return AtriumClientConfiguration(gateway: try address(default: "localhost:\(ServiceName.gatewayMutualTLSPort)"), caPath: ca, identity: enrolled)
        }
        guard let key = apiKey ?? environment["ATRIUM_API_KEY"], !key.isEmpty else {
            throw ValidationError("no credential: pass --api-key, set ATRIUM_API_KEY, or use --identity after `atrium enroll`")
        }
        return AtriumClientConfiguration(gateway: try address(default: "localhost:7443"), caPath: ca, apiKey: key)
    }

    /// The gateway address from the option or the environment.
    func address(default fallback: String) throws -> HostAndPort {
        let text = gateway ?? ProcessInfo.processInfo.environment["ATRIUM_GATEWAY"] ?? fallback
        guard let address = HostAndPort(text) else { throw ValidationError("--gateway: expected host:port, got '\(text)'") }
        return address
    }
}

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register, find, inspect and fetch images.",
        subcommands: [Register.self, List.self, Show.self, Conditions.self, Thumbnail.self, FetchImages.self]
    )

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register DICOM files, or every file under directories (recursively), several at a time.",
            discussion: """
                Shows a progress bar on a terminal, then a summary: registered, already stored (the same SOP \
                instance with the same bytes) and refused, each refusal with its reason. Exits 1 if any file was \
                refused. DICOMDIR index files and hidden files are skipped.
                """
        )

        @OptionGroup var client: ClientOptions

        @Option(help: "A comment stored with each image.")
        var comment = ""

        @Option(name: .shortAndLong, help: "How many files are uploaded at once.")
        var jobs = 4

        @Flag(help: "Replace an image registered earlier with the same SOP instance but other bytes (the old version is kept).")
        var supersede = false

        @Option(help: "auto, bytes or grpc: how the bytes travel (bytes: HTTPS POSTs to the data plane, with capabilities from AuthorizeUpload).")
        var via: UploadTransport = .automatic

        @Flag(name: .shortAndLong, help: "Print one line per file.")
        var verbose = false

        @Flag(help: "Print the result of every file and the summary as one JSON object.")
        var json = false

        @Argument(help: "Files and directories.")
        var paths: [String]

        func validate() throws {
            guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be 1 to 64") }
        }

        func run() async throws {
            let files = try RegisterPlan.files(in: paths)
            let header = Atrium_V1_RegisterHeader.with { $0.format = .dicomPart10; $0.comment = comment; $0.supersede = supersede }
            var progress = Progress(total: files.count, enabled: !json && isatty(STDERR_FILENO) == 1)
            var outcomes: [RegisterPlan.Outcome] = []
            // --jobs uploaders, each over its own data-plane connection (or gRPC), take the files in order.
            let queue = FileQueue(files)
            let via = via
            try await withAtrium(client) { atrium in
                let (finished, sink) = AsyncStream<RegisterPlan.Outcome>.makeStream()
                async let uploaded: Void = {
                    defer { sink.finish() }
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<min(jobs, files.count) {
                            group.addTask {
                                try await atrium.withUploader(via: via) { uploader in
                                    while let file = queue.next() {
                                        sink.yield(await RegisterPlan.register(file, header: header, with: &uploader))
                                    }
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                }()
                for await outcome in finished {
                    outcomes.append(outcome)
                    progress.advance(bytes: outcome.bytes)
                    if verbose && !json { progress.above(outcome.line) }
                }
                try await uploaded
            }
            progress.finish()
            let summary = RegisterPlan.Summary(outcomes)
            if json {
                print(try summary.json())
            } else {
                for outcome in outcomes where outcome.error != nil && !verbose { print(outcome.line) }
                print(summary.text)
            }
            if summary.refused > 0 { throw ExitCode(1) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the images you may see, filtered, in acquisition order; one line each, or JSON.",
            discussion: "Filters combine with AND. --limit 0 lists everything, page by page."
        )
        @OptionGroup var client: ClientOptions
        @Option(name: .customLong("patient-id"), help: "Patient ID.") var patientID = ""
        @Option(help: "Registrant subscriber ID.") var registrant = ""
        @Option(help: "Modality code, e.g. CT.") var modality = ""
        @Option(help: "Study instance UID.") var study = ""
        @Option(help: "Series instance UID.") var series = ""
        @Option(help: "Device ID (station name or serial).") var device = ""
        @Option(name: .customLong("body-part"), help: "Body part, e.g. CHEST.") var bodyPart = ""
        @Option(help: "Acquired at or after this time (ISO 8601, e.g. 2026-03-01T00:00:00Z).") var from: String?
        @Option(help: "Acquired before this time (ISO 8601).") var until: String?
        @Option(help: "At most this many images (0: all).") var limit = 100
        @Flag(help: "Print each record as JSON (the canonical proto3 JSON mapping), one per line.") var json = false

        func validate() throws {
            guard limit >= 0 else { throw ValidationError("--limit must be 0 (all) or more") }
        }

        func run() async throws {
            var filter = Atrium_V1_ImageFilter.with {
                $0.patientID = patientID
                $0.registrantID = registrant
                $0.modality = modality
                $0.studyInstanceUid = study
                $0.seriesInstanceUid = series
                $0.deviceID = device
                $0.bodyPart = bodyPart
            }
            if let from { filter.acquired.start = .init(date: try Self.time(from, "--from")) }
            if let until { filter.acquired.end = .init(date: try Self.time(until, "--until")) }
            try await withAtrium(client) { atrium in
                var token = ""
                var printed = 0
                repeat {
                    let size = limit == 0 ? 1000 : UInt32(min(1000, limit - printed))
                    let page = try await atrium.registry.listImages(
                        .with { $0.filter = filter; $0.page = .with { $0.pageSize = size; $0.pageToken = token } },
                        metadata: atrium.metadata
                    )
                    for record in page.images {
                        print(json ? try record.jsonString() : Self.line(record))
                    }
                    printed += page.images.count
                    token = page.nextPageToken
                } while !token.isEmpty && (limit == 0 || printed < limit)
            }
        }

        static func time(_ text: String, _ option: String) throws -> Date {
            guard let date = ISO8601DateFormatter().date(from: text) else { throw ValidationError("\(option): expected ISO 8601, e.g. 2026-03-01T00:00:00Z") }
            return date
        }

        static func line(_ record: Atrium_V1_ImageRecord) -> String {
            let acquired = record.hasAcquiredAt ? ISO8601DateFormatter().string(from: record.acquiredAt.date) : "-"
            return [record.imageID, acquired, record.modality, record.patientID, record.bodyPart.isEmpty ? "-" : record.bodyPart,
                    "\(record.rows)x\(record.columns)", record.seriesInstanceUid].joined(separator: "  ")
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an image record: its fields, conditions and provenance.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The image ID.") var id: String

        func run() async throws {
            let record = try await withAtrium(client) { try await $0.image(id: id) }
            try output.print(record) {
                var lines = [
                    "image        \(record.imageID)",
                    "registrant   \(record.registrantID)",
                    "patient      \(record.patientID)  \(record.patientName)",
                    "study        \(record.studyInstanceUid)",
                    "series       \(record.seriesInstanceUid)",
                    "instance     \(record.sopInstanceUid)  (#\(record.instanceNumber))",
                    "modality     \(record.modality)  body part \(record.bodyPart.isEmpty ? "-" : record.bodyPart)  device \(record.deviceID.isEmpty ? "-" : record.deviceID)",
                    "acquired     \(record.hasAcquiredAt ? ISO8601DateFormatter().string(from: record.acquiredAt.date) : "-")",
                    "pixels       \(record.rows)x\(record.columns), \(record.bitsAllocated)-bit, \(record.frames) frame(s), \(record.transferSyntaxUid)",
                    "stored       \(record.digest.sizeBytes) bytes, sha256 \(record.digest.sha256)",
                    "registered   \(ISO8601DateFormatter().string(from: record.registeredAt.date))",
                    "conditions   version \(record.conditionsVersion): \(ConditionsText.summary(record.conditions))",
                ]
                if !record.comment.isEmpty { lines.append("comment      \(record.comment)") }
                if !record.derivedFromImageIds.isEmpty { lines.append("derived from \(record.derivedFromImageIds.joined(separator: ", "))") }
                if !record.supersedesImageID.isEmpty { lines.append("supersedes   \(record.supersedesImageID)") }
                if !record.supersededByImageID.isEmpty { lines.append("superseded by \(record.supersededByImageID)") }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Conditions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show an image's acquisition conditions with every version, or record a correction.",
            discussion: """
                With --set KEY=VALUE (repeatable) a new version is recorded, merged over the current one. Typed keys: \
                mr.tr_ms, mr.te_ms, mr.ti_ms, mr.flip_deg, mr.field_t, mr.sequence, ct.kvp, ct.ma, ct.mas, ct.pitch, \
                ct.thickness_mm, ct.kernel, xray.kvp, xray.mas, xray.time_ms, xray.sid_mm; any other key goes to the \
                free key/value map (an empty value removes it).
                """
        )
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The image ID.") var id: String
        @Option(name: .customLong("set"), help: "KEY=VALUE to record (repeatable).") var assignments: [String] = []
        @Option(help: "Why the conditions are corrected.") var reason = ""
        @Option(name: .customLong("protocol"), help: "Also write the current conditions as a JSON protocol file, the hand-off to a modality console (see docs/delivery.md).")
        var protocolFile: String?

        func run() async throws {
            try await withAtrium(client) { atrium in
                if !assignments.isEmpty {
                    let conditions = try ConditionsText.parse(assignments)
                    _ = try await atrium.registry.setAcquisitionConditions(
                        .with { $0.imageID = id; $0.conditions = conditions; $0.reason = reason },
                        metadata: atrium.metadata
                    )
                }
                let record = try await atrium.delivery.getAcquisitionConditions(.with { $0.imageID = id }, metadata: atrium.metadata)
                if let protocolFile {
                    try AcquisitionProtocol.json(record).write(to: URL(fileURLWithPath: protocolFile), options: .atomic)
                }
                try output.print(record) {
                    record.history.map { version in
                        let when = ISO8601DateFormatter().string(from: version.recordedAt.date)
                        return "v\(version.version)  \(when)  \(version.recordedBy)\(version.reason.isEmpty ? "" : "  (\(version.reason))")\n    \(ConditionsText.summary(version.conditions))"
                    }.joined(separator: "\n")
                }
            }
        }
    }

    struct Thumbnail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Save an image's PNG thumbnail.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The image ID.") var id: String
        @Option(name: .shortAndLong, help: "The PNG file to write.") var output: String

        func run() async throws {
            let thumbnail = try await withAtrium(client) { atrium in
                try await atrium.registry.getThumbnail(.with { $0.imageID = id }, metadata: atrium.metadata)
            }
            try thumbnail.png.write(to: URL(fileURLWithPath: output))
            print("\(id)  \(thumbnail.width)x\(thumbnail.height)  -> \(output)")
        }
    }
}
