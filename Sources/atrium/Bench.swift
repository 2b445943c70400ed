import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import Foundation

/// Load generation against a running network: what `make bench` drives.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure register and fetch throughput against a running network.",
        subcommands: [ImagesBench.self, QueryBench.self, GatewayBench.self],
        defaultSubcommand: ImagesBench.self
    )
}

/// `atrium bench images` (the default): register and fetch throughput through the gateway.
struct ImagesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Measure register and fetch throughput against a running network.",
        discussion: """
            Registers every file in --dir through the gateway, split across --clients concurrent clients (each with
            its own connection), then fetches every image back into memory and checks its SHA-256. Prints one JSON object per
            phase: images, bytes, seconds, images/s, MB/s, and p50/p99 latency per image in milliseconds.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "A directory of DICOM Part 10 files.")
    var dir: String

    @Option(help: "Concurrent clients.")
    var clients = 1

    func validate() throws {
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
    }

    func run() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".dcm") }.sorted().map { "\(dir)/\($0)" }
        guard !files.isEmpty else { throw ValidationError("no .dcm files in \(dir)") }
        let configuration = try client.configuration()
        let shards = (0..<clients).map { index in stride(from: index, to: files.count, by: clients).map { files[$0] } }

        let registered = try await measure(phase: "register", shards: shards) { atrium, file in
            let receipt = try await atrium.registerImage(file: file)
            return (receipt.imageID, receipt.digest.sizeBytes)
        }
        let idShards = (0..<clients).map { index in stride(from: index, to: registered.count, by: clients).map { registered[$0] } }
        _ = try await measure(phase: "fetch", shards: idShards) { atrium, id in
            // Into memory and discarded (hash still checked), so the figure is the network's, not the disk's.
            let digest = try await atrium.fetchImage(id: id) { _ in }
            return (id, digest.sizeBytes)
        }

        /// Runs `work` over every shard concurrently, one client per shard; prints the phase's figures.
        func measure(
            phase: String,
            shards: [[String]],
            work: @escaping @Sendable (AtriumClient, String) async throws -> (String, UInt64)
        ) async throws -> [String] {
            let started = ContinuousClock.now
            let results = try await withThrowingTaskGroup(of: [(String, UInt64, Duration)].self) { group in
                for shard in shards {
                    group.addTask {
                        try await AtriumClient.with(configuration) { atrium in
                            var out: [(String, UInt64, Duration)] = []
                            for item in shard {
                                let begin = ContinuousClock.now
                                let (id, bytes) = try await work(atrium, item)
                                out.append((id, bytes, ContinuousClock.now - begin))
                            }
                            return out
                        }
                    }
                }
                var all: [(String, UInt64, Duration)] = []
                for try await part in group { all += part }
                return all
            }
            let seconds = Self.seconds(ContinuousClock.now - started)
            let latencies = results.map { Self.seconds($0.2) * 1000 }.sorted()
            let bytes = results.reduce(UInt64(0)) { $0 + $1.1 }
            let figures: [String: Any] = [
                "phase": phase, "clients": shards.count, "images": results.count, "bytes": bytes,
                "seconds": seconds, "images_per_s": Double(results.count) / seconds, "mb_per_s": Double(bytes) / 1e6 / seconds,
                "p50_ms": Self.percentile(latencies, 0.50), "p99_ms": Self.percentile(latencies, 0.99),
            ]
            let json = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
            return results.map(\.0)
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}

/// `atrium bench query`: ListImages latency through the gateway, over whatever the index holds.
struct QueryBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "query",
        abstract: "Measure ListImages latency against a running network.",
        discussion: """
            Sends --calls sequential ListImages requests: a patient query (filter by patient ID, first page of up to 100) for a \
            random patient among --patients IDs named <prefix><n>, and the same patient's images of one modality. Prints one JSON \
            object per query kind with p50/p99 latency in milliseconds and the mean number of records returned.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Patient IDs are <prefix><n>.") var patientPrefix = "PB-"
    @Option(help: "How many patients the index holds.") var patients = 1000
    @Option(help: "Calls per query kind.") var calls = 1000
    @Option(help: "A label for the figures (e.g. the record count).") var label = ""

    func run() async throws {
        var generator = SystemRandomNumberGenerator()
        try await AtriumClient.with(try client.configuration()) { atrium in
            for kind in ["patient", "patient+modality"] {
                var latencies: [Double] = []
                var returned = 0
                for call in 0..<(calls + 20) {
                    let patient = "\(patientPrefix)\(Int.random(in: 0..<patients, using: &generator))"
                    let request = Atrium_V1_ListImagesRequest.with {
                        $0.filter.patientID = patient
                        if kind == "patient+modality" { $0.filter.modality = "CT" }
                        $0.page.pageSize = 100
                    }
                    let begin = ContinuousClock.now
                    let response = try await atrium.registry.listImages(request, metadata: atrium.metadata)
                    // The first calls warm the connection and the caches; they are not counted.
                    if call >= 20 {
                        latencies.append(ImagesBench.seconds(ContinuousClock.now - begin) * 1000)
                        returned += response.images.count
                    }
                }
                latencies.sort()
                let figures: [String: Any] = [
                    "phase": "query", "kind": kind, "label": label, "calls": calls,
                    "p50_ms": ImagesBench.percentile(latencies, 0.50), "p99_ms": ImagesBench.percentile(latencies, 0.99),
                    "mean_records": Double(returned) / Double(calls),
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]), as: UTF8.self))
            }
        }
    }
}
