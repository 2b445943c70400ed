import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import Foundation
import GRPCCore

/// `atrium bench process`: how long one processing job over a series takes, end to end, on a running network.
struct ProcessBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process",
        abstract: "Time one processing job over a series of stored images, from Submit to SUCCEEDED.",
        discussion: """
            Registers every *.dcm file of --dir through the gateway (skipped when already registered), submits one
            job applying smooth(--sigma) to all of them as stored images, polls GetJob every 20 ms until it ends,
            then fetches the result stream and checks it. Runs --runs jobs and prints one JSON object per job:
            images, seconds (Submit to SUCCEEDED), MPix/s of input, the CPU seconds of the filters, and with --watch
            the CPU seconds each watched process used for the job (job_cpu) and for downloading its results
            (download_cpu). The owning instance splits the batch across every serving instance by spare capacity,
            so a network with two instances should take about half the time of one (each instance with one worker).
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "A directory of DICOM slices.")
    var dir: String

    @Option(help: "The smoothing sigma in pixels.")
    var sigma = 1.5

    @Option(help: "Jobs to time.")
    var runs = 3

    @Option(help: "Atrium processes whose CPU to report, as name=pid, comma-separated: per job (Submit to SUCCEEDED) and per result download.")
    var watch = ""

    func run() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".dcm") }.sorted().map { "\(dir)/\($0)" }
        guard !files.isEmpty else { throw ValidationError("no .dcm files in \(dir)") }
        let watched = try CPUWatch(watch)
        try await withAtrium(client) { atrium in
            var ids: [String] = []
            for file in files { ids.append(try await atrium.registerImage(file: file).imageID) }
            let records = try await atrium.images()
            let pixels = records.filter { ids.contains($0.imageID) }.reduce(0.0) { $0 + Double($1.rows) * Double($1.columns) }
            let request = ProcessingRequest(operation: .with { $0.smooth = .with { $0.sigma = sigma } }, inputs: .images(ids))
            for _ in 0..<runs {
                let cpuAtSubmit = watched.snapshot()
                let started = ContinuousClock.now
                var job = try await atrium.submitProcessing(request)
                while job.state == .queued || job.state == .running {
                    try await Task.sleep(for: .milliseconds(20))
                    job = try await atrium.processingJob(job.jobID)
                }
                let elapsed = started.duration(to: .now)
                let cpuAtSuccess = watched.snapshot()
                guard job.state == .succeeded else { throw ValidationError("job \(job.jobID) ended \(job.state): \(job.failureReason)") }
                let outcome = try await atrium.processingResult(jobID: job.jobID)
                let cpuAtDownload = watched.snapshot()
                guard outcome.results.count == ids.count else { throw ValidationError("job \(job.jobID) returned \(outcome.results.count) results") }
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let line: [String: Any] = [
                    "images": ids.count, "seconds": (seconds * 1000).rounded() / 1000, "MPix_s": (pixels / 1e6 / seconds * 10).rounded() / 10,
                    "cpu_seconds": (outcome.summary.cpuSeconds * 1000).rounded() / 1000, "owner": job.instanceID,
                    "job_cpu": CPUWatch.used(from: cpuAtSubmit, to: cpuAtSuccess),
                    "download_cpu": CPUWatch.used(from: cpuAtSuccess, to: cpuAtDownload),
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
            }
        }
    }
}
