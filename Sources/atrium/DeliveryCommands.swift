import SwiftProtobuf
public import ArgumentParser
public import AtriumAPI
public import AtriumClient
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore

extension Atrium_V1_Encoding: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "original": self = .original
        case "explicit-le", "explicit_le": self = .explicitLe
        case "jpeg-ls", "jpeg_ls", "jpegls": self = .jpegLs
        case "deflate": self = .deflate
        default: return nil
        }
    }

    /// The CLI's name of an encoding.
    var argumentName: String {
        switch self {
        case .original, .unspecified: "original"
        case .explicitLe: "explicit-le"
        case .jpegLs: "jpeg-ls"
        case .deflate: "deflate"
        case .UNRECOGNIZED(let value): "encoding \(value)"
        }
    }
}

extension Images {
    struct FetchImages: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fetch",
            abstract: "Fetch images into a directory, compressed losslessly in transit, verified and resumable.",
            discussion: """
                Each image is written to DIR/<image ID>.dcm through a .part file, checked against the SHA-256 the \
                server sends, fsynced and renamed, so a .dcm file is always complete and verified. A dropped \
                connection is retried with backoff from where each image stopped; running the same command again \
                resumes the .part files left by an interrupted run. Encodings: original (the stored bytes), \
                explicit-le, jpeg-ls (JPEG-LS lossless), deflate. Exits 1 if any image was refused.

                The bytes come over HTTPS from delivery's data plane (--via bytes: capabilities from the gateway, \
                then GET with Range to resume) or inside gRPC through the gateway (--via grpc). The default, auto, \
                takes the byte path unless the server has it off or the contract paces bytes.
                """
        )

        @OptionGroup var client: ClientOptions

        @Argument(help: "Image IDs.")
        var ids: [String]

        @Option(help: "auto, bytes or grpc: how the bytes travel.")
        var via: FetchTransport = .automatic

        @Option(name: .shortAndLong, help: "The directory to write to (created if needed).")
        var output: String

        @Option(help: "original, explicit-le, jpeg-ls or deflate.")
        var encoding: Atrium_V1_Encoding = .original

        func validate() throws {
            guard !ids.isEmpty else { throw ValidationError("name at least one image ID") }
        }

        func run() async throws {
            let interactive = isatty(STDERR_FILENO) == 1
            let bar = ProgressBox(Progress(total: Set(ids).count, enabled: interactive))
            let outcomes = try await withAtrium(client) { atrium in
                try await atrium.fetchImages(ids, into: output, options: .init(encoding: encoding, transport: via)) { progress in
                    bar.update(progress)
                }
            }
            bar.finish()
            var refused = 0
            for outcome in outcomes {
                switch outcome {
                case .fetched(let image):
                    let note = image.encodingNote.isEmpty ? "" : "  (\(image.encodingNote))"
                    print("\(image.imageID)  \(image.encoding.argumentName)  \(image.digest.sizeBytes) bytes  sha256 \(image.digest.sha256)  -> \(output)/\(image.imageID).dcm\(note)")
                case .refused(let id, let code, let message):
                    refused += 1
                    print("\(id)  refused: \(code.statusName): \(message)")
                }
            }
            if refused > 0 { throw ExitCode(1) }
        }
    }
}

/// Feeds fetch progress (per chunk) to the per-image progress bar.
private final class ProgressBox: @unchecked Sendable {
    private var bar: Progress

    init(_ bar: Progress) { self.bar = bar }

    func update(_ progress: FetchProgress) {
        if progress.receivedBytes == progress.totalBytes {
            bar.advance(bytes: progress.totalBytes)
        }
    }

    func finish() { bar.finish() }
}

/// The JSON protocol file `images conditions --protocol` writes: what a modality console needs to rescan
/// with the same settings.
enum AcquisitionProtocol {
    static let format = "atrium.acquisition-protocol/v1"

    static func json(_ response: Atrium_V1_GetAcquisitionConditionsResponse) throws -> Data {
        let conditions = try response.current.jsonString()
        let version = response.history.last?.version ?? 0
        let object: [String: Any] = [
            "format": format,
            "imageId": response.imageID,
            "modality": response.modality,
            "deviceId": response.deviceID,
            "conditionsVersion": version,
            "conditions": try JSONSerialization.jsonObject(with: Data(conditions.utf8)),
        ]
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

/// `atrium print`: hand film sheets to printers and follow them.
struct PrintCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "print",
        abstract: "Submit film sheets to a printer subscriber and check on them.",
        subcommands: [Submit.self, Status.self]
    )

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hand a film layout to a printer; returns the job ID at once.",
            discussion: """
                The printer fetches the images itself. Film box terms are DICOM's: --format 'STANDARD\\C,R' (C \
                columns, R rows), --film-size (8INX10IN, 10INX12IN, 11INX14IN, 14INX14IN, 14INX17IN, 24CMX24CM, \
                24CMX30CM, A4, A3, ...), --orientation PORTRAIT|LANDSCAPE, --magnification \
                REPLICATE|BILINEAR|CUBIC|NONE. --window CENTER,WIDTH per image, in order (all or none).
                """
        )
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "The printer's subscriber ID.") var printer: String
        @Option(help: "Image Display Format, e.g. 'STANDARD\\2,3'.") var format = "STANDARD\\1,1"
        @Option(help: "Film Size ID.") var filmSize = "14INX17IN"
        @Option(help: "PORTRAIT or LANDSCAPE.") var orientation = "PORTRAIT"
        @Option(help: "REPLICATE, BILINEAR, CUBIC or NONE.") var magnification = "BILINEAR"
        @Option(help: "Window CENTER,WIDTH for the next image (repeatable; all images or none).") var window: [String] = []
        @Option(help: "Copies, 1 to 99.") var copies: UInt32 = 1
        @Argument(help: "Image IDs, in layout order (row by row from the top left).") var ids: [String]

        func run() async throws {
            let windows = try window.map { text -> Atrium_V1_Window in
                let parts = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
                guard parts.count == 2, let center = parts[0], let width = parts[1] else {
                    throw ValidationError("--window: expected CENTER,WIDTH, got '\(text)'")
                }
                return .with { $0.center = center; $0.width = width }
            }
            let job = try await withAtrium(client) { atrium in
                try await atrium.delivery.submitPrintJob(
                    .with {
                        $0.printerID = printer
                        $0.imageIds = ids
                        $0.copies = copies
                        $0.filmBox = .with {
                            $0.imageDisplayFormat = format
                            $0.filmSizeID = filmSize
                            $0.filmOrientation = orientation
                            $0.magnificationType = magnification
                            $0.windows = windows
                        }
                    },
                    metadata: atrium.metadata
                )
            }
            try output.print(job) { PrintCommand.line(job) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a print job's state.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The job ID.") var id: String

        func run() async throws {
            let job = try await withAtrium(client) { atrium in
                try await atrium.delivery.getPrintJob(.with { $0.jobID = id }, metadata: atrium.metadata)
            }
            try output.print(job) { PrintCommand.line(job) }
        }
    }

    static func line(_ job: Atrium_V1_PrintJob) -> String {
        let state: String
        switch job.state {
        case .pending: state = "pending"
        case .dispatched: state = "dispatched"
        case .printed: state = "printed"
        case .failed: state = "failed"
        case .unspecified, .UNRECOGNIZED: state = "unknown"
        }
        let reason = job.failureReason.isEmpty ? "" : ": \(job.failureReason)"
        return "\(job.jobID)  \(state)\(reason)  printer \(job.printerID)  \(job.filmBox.imageDisplayFormat) \(job.filmBox.filmSizeID)  \(job.imageIds.count) images  \(job.copies) copies"
    }
}

/// `atrium inbox`: what other services delivered to the caller.
struct InboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inbox",
        abstract: "List, watch and acknowledge inbox entries (processing results, share notices).",
        subcommands: [List.self, Watch.self, Ack.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Entries not yet acknowledged (or after --after).")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "List entries after this cursor (default: after the last acknowledged one).") var after: UInt64 = 0
        @Option(help: "At most this many entries, 1 to 1000.") var limit: UInt32 = 100

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                try await atrium.delivery.listInbox(.with { $0.afterCursor = after; $0.limit = limit }, metadata: atrium.metadata)
            }
            try output.print(response) { response.entries.map(InboxCommand.line).joined(separator: "\n") }
        }
    }

    struct Ack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Acknowledge entries up to and including a cursor.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The cursor.") var cursor: UInt64

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                try await atrium.delivery.ackInbox(.with { $0.upToCursor = cursor }, metadata: atrium.metadata)
            }
            print("acknowledged up to \(response.acknowledgedCursor)")
        }
    }

    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print entries as they arrive; with --fetch-to, download their images and acknowledge each entry.",
            discussion: """
                Starts after the last acknowledged entry and reconnects (with backoff) when the connection drops, \
                so nothing is lost. With --fetch-to DIR each entry's images are fetched into DIR (verified, \
                resumable) and the entry is acknowledged only once they are all there, so a killed watcher \
                picks the entry up again. Without --fetch-to entries are printed and acknowledged at once, \
                unless --no-ack. Runs until interrupted, or until --count entries were handled.
                """
        )
        @OptionGroup var client: ClientOptions
        @Option(help: "Fetch each entry's images into this directory before acknowledging it.") var fetchTo: String?
        @Option(help: "Encoding for --fetch-to: original, explicit-le, jpeg-ls or deflate.") var encoding: Atrium_V1_Encoding = .original
        @Flag(help: "Do not acknowledge entries.") var noAck = false
        @Option(help: "Stop after this many entries (0: run until interrupted).") var count = 0

        func run() async throws {
            let (fetchTo, encoding, acknowledge) = (self.fetchTo, self.encoding, !noAck)
            try await watchForever(try client.configuration(), name: "inbox watch", count: count) { atrium, handled in
                try await atrium.delivery.watchInbox(.with { $0.afterCursor = 0 }, metadata: atrium.metadata) { response in
                    for try await entry in response.messages {
                        try await Self.handle(entry, with: atrium, fetchTo: fetchTo, encoding: encoding, acknowledge: acknowledge)
                        if handled() { return }
                    }
                }
            }
        }

        private static func handle(
            _ entry: Atrium_V1_InboxEntry,
            with atrium: AtriumClient,
            fetchTo: String?,
            encoding: Atrium_V1_Encoding,
            acknowledge: Bool
        ) async throws {
            say(InboxCommand.line(entry))
            if let fetchTo, !entry.images.isEmpty {
                let outcomes = try await atrium.fetchImages(entry.images.map(\.imageID), into: fetchTo, options: .init(encoding: encoding))
                for outcome in outcomes {
                    switch outcome {
                    case .fetched(let image): say("  \(image.imageID)  \(image.digest.sizeBytes) bytes  -> \(fetchTo)/\(image.imageID).dcm")
                    case .refused(let id, let code, let message): say("  \(id)  refused: \(code.statusName): \(message)")
                    }
                }
            }
            if acknowledge {
                let ack = try await atrium.delivery.ackInbox(.with { $0.upToCursor = entry.cursor }, metadata: atrium.metadata)
                say("  acknowledged \(ack.acknowledgedCursor)")
            }
        }
    }

    static func line(_ entry: Atrium_V1_InboxEntry) -> String {
        let when = ISO8601DateFormatter().string(from: entry.createdAt.date)
        let job = entry.jobID.isEmpty ? "" : "  job \(entry.jobID)"
        let images = entry.images.map(\.imageID).joined(separator: " ")
        return "\(entry.cursor)  \(when)  \(entry.kind)  from \(entry.source)\(job)  \(entry.message)\(images.isEmpty ? "" : "  images: \(images)")"
    }
}


/// Runs a watch stream until `count` items were handled (0: until interrupted), reconnecting with backoff (200 ms
/// doubling to 10 s, back to 200 ms after progress) when the connection drops or the server shuts down. `body`
/// runs one call; it calls `handled()` after each item, which says whether to stop.
func watchForever(
    _ configuration: AtriumClientConfiguration,
    name: String,
    count: Int,
    _ body: @escaping @Sendable (AtriumClient, @escaping @Sendable () -> Bool) async throws -> Void
) async throws {
    let handled = WatchCounter()
    var backoff = Duration.milliseconds(200)
    while count == 0 || handled.value < count {
        let before = handled.value
        do {
            try await AtriumClient.with(configuration) { atrium in
                try await body(atrium) {
                    handled.value += 1
                    return count > 0 && handled.value >= count
                }
            }
        } catch let error as RPCError where error.code == .unavailable || error.code == .aborted || error.code == .unknown {
            FileHandle.standardError.write(Data("\(name): \(error.code.statusName): \(error.message); reconnecting\n".utf8))
            if handled.value > before { backoff = .milliseconds(200) }
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(10))
        } catch let error as RPCError {
            throw CLIError("\(error.code.statusName): \(error.message)")
        }
    }
}

/// Items a watch handled so far (the stream's handler runs inside the awaited call: one task at a time).
private final class WatchCounter: @unchecked Sendable {
    var value = 0
}

/// `auto`, `bytes` or `grpc`: how `--via` names a transport, for fetches and uploads alike.
private func transport<Transport>(_ argument: String, automatic: Transport, bytes: Transport, grpc: Transport) -> Transport? {
    ["auto": automatic, "bytes": bytes, "grpc": grpc][argument]
}

extension FetchTransport: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = transport(argument, automatic: Self.automatic, bytes: .bytes, grpc: .grpc) else { return nil }
        self = value
    }

    public static var allValueStrings: [String] { ["auto", "bytes", "grpc"] }
}

extension UploadTransport: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = transport(argument, automatic: Self.automatic, bytes: .bytes, grpc: .grpc) else { return nil }
        self = value
    }

    public static var allValueStrings: [String] { FetchTransport.allValueStrings }
}
