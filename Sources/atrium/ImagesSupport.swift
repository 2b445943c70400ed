import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumRuntime
import Foundation
import GRPCCore
import Synchronization

/// `images register`: which files, how each went, and the summary.
enum RegisterPlan {
    /// The files named, with directories walked recursively in name order; hidden files and DICOMDIR skipped.
    static func files(in paths: [String]) throws -> [String] {
        var files: [String] = []
        let manager = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: path, isDirectory: &isDirectory) else { throw ValidationError("no such file or directory: \(path)") }
            guard isDirectory.boolValue else {
                files.append(path)
                continue
            }
            guard let enumerator = manager.enumerator(atPath: path) else { throw ValidationError("cannot read directory \(path)") }
            var found: [String] = []
            for case let relative as String in enumerator {
                let name = (relative as NSString).lastPathComponent
                let type = enumerator.fileAttributes?[.type] as? FileAttributeType
                if name.hasPrefix(".") {
                    if type == .typeDirectory { enumerator.skipDescendants() }
                    continue
                }
                let full = (path as NSString).appendingPathComponent(relative)
                // Regular files, or links to one: a FIFO or a device would hang a worker. Linked directories are
                // not followed (no loops).
                var regular = type == .typeRegular
                if type == .typeSymbolicLink {
                    let target = (full as NSString).resolvingSymlinksInPath
                    regular = (try? manager.attributesOfItem(atPath: target)[.type] as? FileAttributeType) == .typeRegular
                }
                guard regular, name.uppercased() != "DICOMDIR" else { continue }
                found.append(full)
            }
            files += found.sorted()
        }
        return files
    }

    struct Outcome: Sendable {
        var file: String
        var receipt: Atrium_V1_RegisterResponse?
        var error: String?
        var bytes: UInt64 { receipt?.digest.sizeBytes ?? 0 }

        var line: String {
            if let receipt {
                return "\(receipt.imageID)  \(receipt.deduplicated ? "already stored" : "registered")  \(receipt.digest.sizeBytes) bytes  \(file)"
            }
            return "refused  \(file): \(error ?? "")"
        }
    }

    static func register(_ file: String, header: Atrium_V1_RegisterHeader, with uploader: inout ImageUploader) async -> Outcome {
        do {
            return Outcome(file: file, receipt: try await uploader.register(header: header, file: file))
        } catch let error as RPCError {
            return Outcome(file: file, error: "\(error.code.statusName): \(error.message)")
        } catch {
            return Outcome(file: file, error: "\(error)")
        }
    }

    struct Summary {
        let outcomes: [Outcome]
        let registered: Int
        let deduplicated: Int
        let refused: Int

        init(_ outcomes: [Outcome]) {
            self.outcomes = outcomes
            deduplicated = outcomes.filter { $0.receipt?.deduplicated == true }.count
            registered = outcomes.filter { $0.receipt?.deduplicated == false }.count
            refused = outcomes.filter { $0.error != nil }.count
        }

        var text: String {
            let bytes = outcomes.reduce(UInt64(0)) { $0 + $1.bytes }
            return "\(outcomes.count) files: \(registered) registered, \(deduplicated) already stored, \(refused) refused (\(String(format: "%.1f", Double(bytes) / 1e6)) MB)"
        }

        func json() throws -> String {
            let files: [[String: String]] = outcomes.map { outcome in
                var entry = ["file": outcome.file]
                if let receipt = outcome.receipt {
                    entry["image_id"] = receipt.imageID
                    entry["sha256"] = receipt.digest.sha256
                    entry["result"] = receipt.deduplicated ? "already_stored" : "registered"
                } else {
                    entry["result"] = "refused"
                    entry["reason"] = outcome.error ?? ""
                }
                return entry
            }
            let object: [String: Any] = ["registered": registered, "already_stored": deduplicated, "refused": refused, "files": files]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return String(decoding: data, as: UTF8.self)
        }
    }
}

/// A one-line progress bar on standard error, redrawn at most 10 times a second.
struct Progress {
    let total: Int
    let enabled: Bool
    private var done = 0
    private var bytes: UInt64 = 0
    private let start = ContinuousClock.now
    private var drawn = ContinuousClock.now - .seconds(1)

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    mutating func advance(bytes: UInt64) {
        done += 1
        self.bytes += bytes
        guard enabled, ContinuousClock.now - drawn >= .milliseconds(100) || done == total else { return }
        drawn = ContinuousClock.now
        draw()
    }

    /// Prints a line above the bar.
    func above(_ line: String) {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        print(line)
        if enabled { draw() }
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    private func draw() {
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let seconds = max(0.001, Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds))
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        let text = String(format: "\r[%@] %d/%d files  %.1f MB  %.1f files/s", bar, done, total, Double(bytes) / 1e6, Double(done) / seconds)
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Acquisition conditions as one line of text, and from `KEY=VALUE` assignments.
enum ConditionsText {
    static func summary(_ conditions: Atrium_V1_AcquisitionConditions) -> String {
        func number(_ value: Double) -> String { value == value.rounded() ? String(Int(value)) : String(value) }
        var parts: [String] = []
        switch conditions.modality {
        case .mr(let mr):
            parts = ["MR TR \(number(mr.repetitionTimeMs)) ms", "TE \(number(mr.echoTimeMs)) ms", "TI \(number(mr.inversionTimeMs)) ms",
                     "flip \(number(mr.flipAngleDeg))°", "\(number(mr.fieldStrengthT)) T", mr.sequenceName]
        case .ct(let ct):
            parts = ["CT \(number(ct.kvp)) kVp", "\(number(ct.tubeCurrentMa)) mA", "\(number(ct.exposureMas)) mAs", "pitch \(number(ct.helicalPitch))",
                     "\(number(ct.sliceThicknessMm)) mm", ct.convolutionKernel]
        case .xray(let xray):
            parts = ["X-ray \(number(xray.kvp)) kVp", "\(number(xray.exposureMas)) mAs", "\(number(xray.exposureTimeMs)) ms", "SID \(number(xray.sourceToDetectorMm)) mm"]
        case .us(let us):
            parts = ["US \(number(us.transducerFrequencyMhz)) MHz", us.transducerType, "MI \(number(us.mechanicalIndex))", "depth \(number(us.depthOfScanFieldMm)) mm"]
        case .nm(let nm):
            parts = ["NM \(nm.radiopharmaceutical)", "\(number(nm.injectedDoseMbq)) MBq", "half-life \(number(nm.halfLifeS)) s", "frame \(number(nm.frameDurationMs)) ms"]
        case nil:
            parts = ["no typed conditions"]
        }
        let extra = conditions.extra.keys.sorted().map { "\($0)=\(conditions.extra[$0]!)" }
        return (parts.filter { !$0.isEmpty } + extra).joined(separator: ", ")
    }

    static func parse(_ assignments: [String]) throws -> Atrium_V1_AcquisitionConditions {
        var conditions = Atrium_V1_AcquisitionConditions()
        for assignment in assignments {
            guard let equals = assignment.firstIndex(of: "=") else { throw ValidationError("--set \(assignment): expected KEY=VALUE") }
            let key = String(assignment[..<equals]), value = String(assignment[assignment.index(after: equals)...])
            func double() throws -> Double {
                guard let number = Double(value), number.isFinite else { throw ValidationError("--set \(key): '\(value)' is not a number") }
                return number
            }
            switch key {
            case "mr.tr_ms": conditions.mr.repetitionTimeMs = try double()
            case "mr.te_ms": conditions.mr.echoTimeMs = try double()
            case "mr.ti_ms": conditions.mr.inversionTimeMs = try double()
            case "mr.flip_deg": conditions.mr.flipAngleDeg = try double()
            case "mr.field_t": conditions.mr.fieldStrengthT = try double()
            case "mr.sequence": conditions.mr.sequenceName = value
            case "ct.kvp": conditions.ct.kvp = try double()
            case "ct.ma": conditions.ct.tubeCurrentMa = try double()
            case "ct.mas": conditions.ct.exposureMas = try double()
            case "ct.pitch": conditions.ct.helicalPitch = try double()
            case "ct.thickness_mm": conditions.ct.sliceThicknessMm = try double()
            case "ct.kernel": conditions.ct.convolutionKernel = value
            case "xray.kvp": conditions.xray.kvp = try double()
            case "xray.mas": conditions.xray.exposureMas = try double()
            case "xray.time_ms": conditions.xray.exposureTimeMs = try double()
            case "xray.sid_mm": conditions.xray.sourceToDetectorMm = try double()
            default: conditions.extra[key] = value
            }
        }
        return conditions
    }
}

struct Share: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Let another subscriber see your images of a patient or of some studies; withdraw and list grants.",
        subcommands: [Grant.self, Revoke.self, List.self]
    )

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Grant a receiver your images of one patient (--patient-id) or of some studies (--study, repeatable).")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The receiving subscriber's ID.") var receiver: String
        @Option(name: .customLong("patient-id"), help: "Every image of this patient, including later ones.") var patientID: String?
        @Option(name: .customLong("study"), help: "A study instance UID (repeatable).") var studies: [String] = []
        @Option(help: "When the grant ends (ISO 8601); no expiry by default.") var expires: String?

        func validate() throws {
            guard (patientID == nil) != studies.isEmpty else { throw ValidationError("give either --patient-id or --study") }
        }

        func run() async throws {
            var request = Atrium_V1_GrantShareRequest.with { $0.receiverID = receiver }
            if let patientID { request.patientID = patientID } else { request.studies = .with { $0.studyInstanceUids = studies } }
            if let expires { request.expiresAt = .init(date: try Images.List.time(expires, "--expires")) }
            let grant = try await withAtrium(client) { atrium in try await atrium.registry.grantShare(request, metadata: atrium.metadata) }
            try output.print(grant) { Share.line(grant) }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Withdraw a grant you made, at once.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The grant ID.") var grantID: String

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                try await atrium.registry.revokeShare(.with { $0.grantID = grantID }, metadata: atrium.metadata)
            }
            try output.print(response) { Share.line(response.grant) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List grants you received, or with --granted those you made.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Flag(help: "Grants you made instead of grants you received.") var granted = false
        @Flag(help: "Include expired and revoked grants.") var all = false

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                var all = Atrium_V1_ListSharesResponse()
                repeat {
                    let page = try await atrium.registry.listShares(
                        .with { $0.grantedByMe = granted; $0.includeInactive = self.all; $0.page = .with { $0.pageSize = 1000; $0.pageToken = all.nextPageToken } },
                        metadata: atrium.metadata
                    )
                    all.grants += page.grants
                    all.nextPageToken = page.nextPageToken
                } while !all.nextPageToken.isEmpty
                return all
            }
            try output.print(response) { response.grants.map(Share.line).joined(separator: "\n") }
        }
    }

    static func line(_ grant: Atrium_V1_ShareGrant) -> String {
        let scope: String
        switch grant.scope {
        case .patientID(let patient): scope = "patient \(patient)"
        case .studies(let list): scope = "studies \(list.studyInstanceUids.joined(separator: ","))"
        case .images(let list): scope = "images \(list.imageIds.joined(separator: ","))"
        case nil: scope = "-"
        }
        let formatter = ISO8601DateFormatter()
        let state = grant.hasRevokedAt ? "revoked \(formatter.string(from: grant.revokedAt.date))" : grant.hasExpiresAt ? "until \(formatter.string(from: grant.expiresAt.date))" : "no expiry"
        return "\(grant.grantID)  \(grant.grantorID) -> \(grant.receiverID)  \(scope)  \(state)"
    }
}

/// Files handed out one at a time to concurrent uploaders.
final class FileQueue: Sendable {
    private let files: [String]
    private let position = Mutex(0)

    init(_ files: [String]) { self.files = files }

    func next() -> String? {
        position.withLock { position in
            guard position < files.count else { return nil }
            defer { position += 1 }
            return files[position]
        }
    }
}
