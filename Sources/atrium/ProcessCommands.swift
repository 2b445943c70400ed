import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore

/// `atrium process`: image processing as a service.
struct ProcessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process",
        abstract: "Run filters and projections on stored or local images, at once or as jobs.",
        discussion: """
            Operations (ARCHITECTURE.md §6): smooth (--param sigma=S), derivative (--param component=magnitude|rows|columns), \
            laplacian, lines, bandpass (--param sigma_low=L --param sigma_high=H), add and subtract (two inputs: A then B), \
            sum_projection, mip and minip (--param axis=slice|rows|columns). Results of stored images are registered \
            as derived images visible to you and to every --to subscriber, whose inboxes get an entry.
            """,
        subcommands: [Run.self, Submit.self, Status.self, Result.self, List.self, Cancel.self]
    )

    /// What to process: shared by `run` and `submit`.
    struct RequestOptions: ParsableArguments {
        @Argument(help: "The operation: smooth, derivative, laplacian, lines, bandpass, add, subtract, sum_projection, mip, minip.")
        var operation: String

        @Option(name: .customLong("param"), help: "An operation parameter, key=value (repeatable).")
        var parameters: [String] = []

        @Option(name: .customLong("image"), help: "A stored image ID (repeatable, in order).")
        var images: [String] = []

        @Option(name: .customLong("file"), help: "A local DICOM file sent with the request (repeatable, in order).")
        var files: [String] = []

        @Option(help: "A series instance UID: every image of it you can see, ordered by slice position.")
        var series: String?

        @Option(name: .customLong("to"), help: "A subscriber whose inbox receives the results (repeatable; needs the receive role).")
        var destinations: [String] = []

        @Option(name: .customLong("output-type"), help: "float32 (default) or source (the first input's integer type).")
        var outputType: String = "float32"

        func validate() throws {
            let forms = [!images.isEmpty, !files.isEmpty, series != nil].filter { $0 }.count
            guard forms == 1 else { throw ValidationError("give exactly one of --image, --file or --series") }
            _ = try request()
        }

        func request() throws -> ProcessingRequest {
            let inputs: ProcessingInputs
            if let series {
                inputs = .series(series)
            } else if !files.isEmpty {
                inputs = .files(files)
            } else {
                inputs = .images(images)
            }
            let type: Atrium_V1_OutputType
            switch outputType.lowercased() {
            case "float32", "float": type = .float32
            case "source": type = .source
            default: throw ValidationError("--output-type must be float32 or source")
            }
            return ProcessingRequest(operation: try Self.operation(operation, parameters), inputs: inputs, outputType: type, destinations: destinations)
        }

        /// The operation message from its name and key=value parameters; unknown names and keys are refused.
        static func operation(_ name: String, _ parameters: [String]) throws -> Atrium_V1_Operation {
            var values: [String: String] = [:]
            for parameter in parameters {
                let parts = parameter.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--param takes key=value, not '\(parameter)'") }
                values[parts[0].lowercased()] = parts[1]
            }
            var used: Set<String> = []
            func number(_ key: String) throws -> Double {
                used.insert(key)
                guard let text = values[key], let value = Double(text) else { throw ValidationError("\(name) needs --param \(key)=NUMBER") }
                return value
            }
            func axis() throws -> Atrium_V1_ProjectionAxis {
                used.insert("axis")
                switch values["axis"]?.lowercased() {
                case nil, "slice", "0": return .slice
                case "rows", "1": return .rows
                case "columns", "2": return .columns
                default: throw ValidationError("--param axis must be slice, rows or columns")
                }
            }
            var operation = Atrium_V1_Operation()
            switch name.lowercased() {
            case "smooth":
                let sigma = try number("sigma")
                operation.smooth = .with { $0.sigma = sigma }
            case "derivative":
                used.insert("component")
                switch values["component"]?.lowercased() {
                case nil, "magnitude": operation.derivative = .with { $0.component = .magnitude }
                case "rows": operation.derivative = .with { $0.component = .rows }
                case "columns": operation.derivative = .with { $0.component = .columns }
                default: throw ValidationError("--param component must be magnitude, rows or columns")
                }
            case "laplacian": operation.laplacian = .init()
            case "lines": operation.lines = .init()
            case "bandpass":
                let low = try number("sigma_low")
                let high = try number("sigma_high")
                operation.bandpass = .with { $0.sigmaLow = low; $0.sigmaHigh = high }
            case "add": operation.add = .init()
            case "subtract": operation.subtract = .init()
            case "sum_projection", "sum":
                let axis = try axis()
                operation.sumProjection = .with { $0.axis = axis }
            case "mip":
                let axis = try axis()
                operation.mip = .with { $0.axis = axis }
            case "minip":
                let axis = try axis()
                operation.minip = .with { $0.axis = axis }
            default: throw ValidationError("unknown operation '\(name)'; see `atrium process --help`")
            }
            if let unknown = values.keys.sorted().first(where: { !used.contains($0) }) {
                throw ValidationError("\(name) takes no parameter '\(unknown)'")
            }
            return operation
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run an operation and write its results (DICOM) to a directory.",
            discussion: "Prints what was applied, by which instance and software, each result and the summary."
        )
        @OptionGroup var client: ClientOptions
        @OptionGroup var options: RequestOptions
        @Option(name: .shortAndLong, help: "The directory the results are written to (created if needed).")
        var output: String = "."

        func run() async throws {
            let request = try options.request()
            let outcome = try await withAtrium(client) { atrium in try await atrium.process(request, into: output) }
            ProcessCommand.describe(outcome)
        }
    }

    struct Submit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue an operation as a job and print the job; fetch its results later with `process result`.",
            discussion: "Without --to, your own inbox gets an entry when the job succeeds."
        )
        @OptionGroup var client: ClientOptions
        @OptionGroup var options: RequestOptions

        func run() async throws {
            let request = try options.request()
            let job = try await withAtrium(client) { atrium in try await atrium.submitProcessing(request) }
            print(ProcessCommand.line(job))
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A job's state, queue position, progress and ETA.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Argument(help: "The job ID.") var job: String

        func run() async throws {
            let job = try await withAtrium(client) { atrium in try await atrium.processingJob(self.job) }
            try output.print(job) { ProcessCommand.line(job) }
        }
    }

    struct Result: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch a finished job's results (DICOM) into a directory.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The job ID.") var job: String
        @Option(name: .shortAndLong, help: "The directory the results are written to (created if needed).")
        var output: String = "."

        func run() async throws {
            let outcome = try await withAtrium(client) { atrium in try await atrium.processingResult(jobID: job, into: output) }
            ProcessCommand.describe(outcome)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Your jobs, newest first.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "Only jobs in this state: queued, running, succeeded, failed, cancelled (repeatable).")
        var state: [String] = []

        func run() async throws {
            let states = try state.map { name -> Atrium_V1_ProcessingJob.State in
                switch name.lowercased() {
                case "queued": return .queued
                case "running": return .running
                case "succeeded": return .succeeded
                case "failed": return .failed
                case "cancelled", "canceled": return .cancelled
                default: throw ValidationError("unknown state '\(name)'")
                }
            }
            let jobs = try await withAtrium(client) { atrium in try await atrium.processingJobs(states: states) }
            let response = Atrium_V1_ListJobsResponse.with { $0.jobs = jobs }
            try output.print(response) { jobs.isEmpty ? "no jobs" : jobs.map(ProcessCommand.line).joined(separator: "\n") }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a queued or running job.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The job ID.") var job: String
        @Option(help: "Why (kept with the job).") var reason: String = ""

        func run() async throws {
            let job = try await withAtrium(client) { atrium in try await atrium.cancelProcessing(self.job, reason: reason) }
            print(ProcessCommand.line(job))
        }
    }

    /// One line per job: ID, state, progress, queue position or ETA, failure reason.
    static func line(_ job: Atrium_V1_ProcessingJob) -> String {
        let state = "\(job.state)".replacingOccurrences(of: "state", with: "").uppercased()
        var parts = [job.jobID, state, "\(job.inputsDone)/\(job.inputCount) inputs"]
        if job.queuePosition > 0 { parts.append("queue position \(job.queuePosition)") }
        if job.hasEstimatedCompletion { parts.append("ETA \(ISO8601DateFormatter().string(from: job.estimatedCompletion.date))") }
        if job.state == .succeeded { parts.append("\(job.resultCount) result\(job.resultCount == 1 ? "" : "s")") }
        if !job.failureReason.isEmpty { parts.append(job.failureReason) }
        return parts.joined(separator: "  ")
    }

    /// Prints a result stream's header, results and summary.
    static func describe(_ outcome: ProcessingOutcome) {
        let header = outcome.header
        let applied = (try? header.operation.jsonString()) ?? "\(header.operation)"
        print("applied \(applied)  output \(header.outputType)  on \(header.inputCount) input\(header.inputCount == 1 ? "" : "s")")
        print("by \(header.instanceIds.joined(separator: ", "))  software \(header.softwareVersion)\(header.jobID.isEmpty ? "" : "  job \(header.jobID)")")
        for result in outcome.results {
            let registered = result.imageID.isEmpty ? "" : "  image \(result.imageID)"
            print("result \(result.index)  \(result.rows)x\(result.columns)  \(result.bitsAllocated)-bit  sha256 \(result.digest.sha256)\(registered)  -> \(result.path ?? "-")")
        }
        let summary = outcome.summary
        print(String(format: "%.3f CPU s, %.3f s wall, %.2f MPix", summary.cpuSeconds, Double(summary.wallTime.seconds) + Double(summary.wallTime.nanos) / 1e9, summary.megapixels))
    }
}
