import ArgumentParser
import AtriumAPI
import AtriumClient
import Foundation

/// Load generation against a running network: what `make bench` drives.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure register and fetch throughput against a running network.",
        subcommands: [ImagesBench.self, GatewayBench.self],
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

    private static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    private static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}
