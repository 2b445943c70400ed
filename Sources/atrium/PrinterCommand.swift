import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumDICOM
import AtriumDelivery
import AtriumRuntime
import Foundation
import GRPCCore

/// `atrium printer run`: a film printer agent. It keeps a `WatchPrintJobs` stream open, fetches each job's
/// images with the job's capability, composes the film sheet as a PNG and reports the outcome.
struct PrinterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "printer",
        abstract: "Run a printer agent (printer subscribers).",
        subcommands: [Run.self]
    )

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Receive print jobs, compose each film sheet as a PNG in --out, and complete the job.",
            discussion: """
                Each sheet is laid out per its film box: the STANDARD\\C,R grid, the film size's aspect ratio at \
                --dpi, each image windowed (the job's window, else the image's own, else its min..max) and fitted \
                to its cell with the magnification type. The sheet is written to OUT/<job ID>.png (atomically), \
                then the job is completed as printed. A job that cannot be rendered (an image refused or not \
                decodable, a layout this agent cannot print) is completed as failed, with the reason. Reconnects \
                with backoff when the connection drops; jobs not completed are sent again after a reconnect.
                """
        )
        @OptionGroup var client: ClientOptions
        @Option(help: "The directory sheets are written to (created if needed).") var out: String
        @Option(help: "Dots per inch, 25 to 600.") var dpi = 150
        @Option(help: "Stop after this many jobs (0: run until interrupted).") var count = 0

        func validate() throws {
            guard (25...600).contains(dpi) else { throw ValidationError("--dpi must be 25 to 600") }
        }

        func run() async throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let (out, dpi) = (self.out, self.dpi)
            try await watchForever(try client.configuration(), name: "printer", count: count) { atrium, handled in
                try await atrium.delivery.watchPrintJobs(.init(), metadata: atrium.metadata) { response in
                    for try await job in response.messages {
                        try await Self.print(job, with: atrium, out: out, dpi: dpi)
                        if handled() { return }
                    }
                }
            }
        }

        /// Renders one job and completes it, printed or failed.
        private static func print(_ job: Atrium_V1_PrintJob, with atrium: AtriumClient, out: String, dpi: Int) async throws {
            let outcome: Result<String, SheetFailure>
            do {
                outcome = .success(try await render(job, with: atrium, out: out, dpi: dpi))
            } catch let failure as SheetFailure {
                outcome = .failure(failure)
            }
            let completed = try await atrium.delivery.completePrintJob(
                .with {
                    $0.jobID = job.jobID
                    switch outcome {
                    case .success: $0.printed = true
                    case .failure(let failure): $0.failureReason = failure.reason
                    }
                },
                metadata: atrium.metadata
            )
            switch outcome {
            case .success(let path): say("\(completed.jobID)  printed  \(job.filmBox.imageDisplayFormat) \(job.filmBox.filmSizeID)  -> \(path)")
            case .failure(let failure): say("\(completed.jobID)  failed: \(failure.reason)")
            }
        }

        /// Fetches the job's images and writes its sheet; a `SheetFailure` says why the job cannot be printed.
        /// Transport errors are thrown as they are, so the agent reconnects and gets the job again.
        private static func render(_ job: Atrium_V1_PrintJob, with atrium: AtriumClient, out: String, dpi: Int) async throws -> String {
            let box = job.filmBox
            let layout: FilmLayout
            do {
                layout = try FilmLayout(box)
            } catch {
                throw SheetFailure(reason: "film box: \(error)")
            }
            var buffers: [String: MemoryDestination] = [:]
            let outcomes = try await atrium.fetchImages(job.imageIds, options: .init(fetchID: job.jobID, printJobID: job.jobID)) { id in
                let buffer = MemoryDestination()
                buffers[id] = buffer
                return buffer
            }
            for outcome in outcomes {
                if case .refused(let id, let code, let message) = outcome {
                    throw SheetFailure(reason: "image \(id) was not delivered: \(code.statusName): \(message)")
                }
            }
            var files: [DICOMFile] = []
            for id in job.imageIds {
                do {
                    files.append(try DICOMReader.read([UInt8](buffers[id]!.data)))
                } catch {
                    throw SheetFailure(reason: "image \(id) is not readable DICOM: \(error)")
                }
            }
            let windows = box.windows.isEmpty ? Array(repeating: nil, count: files.count) : box.windows.map { FilmWindow(center: $0.center, width: $0.width) }
            let png: [UInt8]
            do {
                png = try FilmSheet.png(layout: layout, images: files, windows: windows, dpi: dpi)
            } catch {
                throw SheetFailure(reason: "the sheet cannot be composed: \(error)")
            }
            let path = "\(out)/\(job.jobID).png"
            do {
                try Data(png).write(to: URL(fileURLWithPath: path), options: .atomic)
            } catch {
                throw SheetFailure(reason: "the sheet cannot be written: \(error)")
            }
            return path
        }

        private struct SheetFailure: Error {
            let reason: String
        }
    }
}
