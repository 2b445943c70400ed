import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import Crypto
import Foundation
import GRPCCore
import AtriumTransport

/// Load generation against a running network: what `make bench` drives.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure register and fetch throughput against a running network.",
        subcommands: [ImagesBench.self, QueryBench.self, GatewayBench.self, PrintBench.self, ImagingBench.self, ProcessBench.self],
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
            its own connection), then fetches every image back into memory in each of --encodings and checks its
            SHA-256: one image per call, and with --batch N also N images per call (a series). An encoding other
            than original is fetched once first to fill delivery's variant cache (the "transcode" phase), then
            measured warm. With --mesh-data (the data directory of a local mesh) the fetches are measured again
            straight to delivery, presenting the gateway's certificate, to show the gateway's cost. Prints one JSON
            object per phase: images, bytes, seconds, images/s, MB/s, and p50/p99 latency per call in milliseconds.
            Route "bytes" is the byte path: AuthorizeFetch for --batch images, then one HTTPS GET per image.
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "A directory of DICOM Part 10 files.")
    var dir: String

    @Option(help: "Concurrent clients.")
    var clients = 1

    @Option(help: "Fetch encodings, comma-separated: original, explicit-le, jpeg-ls, deflate.")
    var encodings = "original"

    @Option(help: "Also fetch this many images per call (1: only one per call).")
    var batch = 1

    @Option(help: "The data directory of a local mesh (`atrium up --data-dir`): also measure fetches straight to delivery.")
    var meshData: String?

    @Flag(help: "Do not measure the byte path (AuthorizeFetch, then HTTPS from the data plane).")
    var noBytePath = false

    @Flag(help: "Measure only the byte path, over the images already registered (for profiling it).")
    var onlyBytePath = false

    @Flag(help: "Measure only registration (for profiling it).")
    var onlyRegister = false

    @Option(help: "bytes or grpc: how registration sends the images (auto is not measured: it is one or the other).")
    var registerVia: UploadTransport = .bytes

    @Option(help: "Processes whose CPU each phase reports per image, as name=pid, comma-separated (this process is 'client').")
    var watch = ""

    func validate() throws {
        guard clients >= 1 else { throw ValidationError("--clients must be at least 1") }
        guard registerVia != .automatic else { throw ValidationError("--register-via: bytes or grpc") }
        guard (1...1000).contains(batch) else { throw ValidationError("--batch must be 1 to 1000") }
        for name in encodings.split(separator: ",") where Atrium_V1_Encoding(argument: String(name)) == nil {
            throw ValidationError("--encodings: unknown encoding '\(name)'")
        }
    }

    func run() async throws {
        try await Self.$watched.withValue(try CPUWatch(watch)) { try await measureAll() }
    }

    /// The processes whose CPU each phase reports.
    @TaskLocal static var watched = CPUWatch(processes: [])

    private func measureAll() async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".dcm") }.sorted().map { "\(dir)/\($0)" }
        guard !files.isEmpty else { throw ValidationError("no .dcm files in \(dir)") }
        let configuration = try client.configuration()
        let gateway: Connect = { body in try await AtriumClient.with(configuration, body) }

        if !onlyBytePath {
            // One uploader per client: over the byte path, AuthorizeUpload for 8 images at a time and one HTTPS POST
            // per image; over gRPC, one Register stream per image through the gateway.
            let transport = registerVia
            _ = try await Self.measure(phase: "register", route: transport == .bytes ? "bytes" : "gateway", units: Self.shard(files.map { [$0] }, clients), connect: gateway) { atrium, shard in
                try await atrium.withUploader(via: transport) { uploader in
                    try await Self.timed(shard) { unit in try await uploader.registerImage(file: unit[0]).digest.sizeBytes }
                }
            }
        }
        if onlyRegister { return }
        let ids = try await AtriumClient.with(configuration) { atrium in try await atrium.images().map(\.imageID) }
        var routes: [(String, Connect)] = [("gateway", gateway)]
        if let meshData {
            let caller = try await AtriumClient.with(configuration) { atrium in try await atrium.account.whoAmI(.init(), metadata: atrium.metadata) }
            routes.append(("direct", try Self.direct(meshData: meshData, caller: caller)))
        }
        for name in encodings.split(separator: ",") {
            let encoding = Atrium_V1_Encoding(argument: String(name))!
            if encoding != .original && !onlyBytePath {
                // Cold: every image transcoded once and cached by delivery.
                _ = try await Self.fetch(ids, encoding: encoding, batch: batch, clients: clients, phase: "transcode", route: "gateway", connect: gateway)
            }
            for (route, connect) in routes where !onlyBytePath {
                for size in Set([1, batch]).sorted() {
                    _ = try await Self.fetch(ids, encoding: encoding, batch: size, clients: clients, phase: "fetch", route: route, connect: connect)
                }
            }
            if !noBytePath {
                // The byte path: capabilities through the gateway for --batch images at a time, then one HTTPS GET per
                // image over one keep-alive connection per call.
                _ = try await Self.fetch(ids, encoding: encoding, batch: batch, clients: clients, phase: "fetch", route: "bytes", transport: .bytes, connect: gateway)
            }
        }
    }

    typealias Connect = @Sendable (_ body: (AtriumClient) async throws -> [(UInt64, Int, Duration)]) async throws -> [(UInt64, Int, Duration)]

    /// Splits units round-robin across `count` clients.
    static func shard<T>(_ units: [T], _ count: Int) -> [[T]] {
        (0..<count).map { index in stride(from: index, to: units.count, by: count).map { units[$0] } }
    }

    /// A connection straight to delivery, as the gateway would make it: the gateway's certificate and the
    /// caller's verified identity in the metadata.
    static func direct(meshData: String, caller: Atrium_V1_Subscriber) throws -> Connect {
        guard let port = PortFile.read("\(meshData)/run/delivery.port") else { throw ValidationError("--mesh-data: no run/delivery.port in \(meshData)") }
        let identity = VerifiedCaller(
            subscriberID: caller.subscriberID, kind: caller.kind, roles: Set(caller.contract.roles), patientIDs: caller.patientIds, requestID: "req_bench"
        )
        let security = ClientSecurity.mutualTLS(.service(.gateway, in: "\(meshData)/pki"))
        return { body in
            try await ClientFactory.withClient(to: HostAndPort(host: "127.0.0.1", port: port), security: security) { connection in
                try await body(AtriumClient(connection: connection, metadata: identity.metadata))
            }
        }
    }

    /// Fetches every image in `encoding`, `batch` per call, into memory (hash checked); prints the figures.
    static func fetch(
        _ ids: [String],
        encoding: Atrium_V1_Encoding,
        batch: Int,
        clients: Int,
        phase: String,
        route: String,
        transport: FetchTransport = .grpc,
        connect: @escaping Connect
    ) async throws -> UInt64 {
        let units = stride(from: 0, to: ids.count, by: batch).map { Array(ids[$0..<min($0 + batch, ids.count)]) }
        return try await measure(
            phase: phase, route: route, units: shard(units, clients), connect: connect,
            extra: ["encoding": encoding.argumentName, "batch": batch]
        ) { atrium, unit in
            let outcomes = try await atrium.fetchImages(unit, options: .init(encoding: encoding, transport: transport), destination: { _ in DiscardDestination() })
            return try outcomes.reduce(0) { $0 + (try $1.image().digest.sizeBytes) }
        }
    }

    /// Runs `work` over every shard concurrently, one connection per shard; prints the phase's figures and
    /// returns the bytes moved.
    static func measure(
        phase: String,
        route: String,
        units shards: [[[String]]],
        connect: @escaping Connect,
        extra: [String: Any] = [:],
        work: @escaping @Sendable (AtriumClient, [String]) async throws -> UInt64
    ) async throws -> UInt64 {
        try await measure(phase: phase, route: route, units: shards, connect: connect, extra: extra) { atrium, shard in
            try await timed(shard) { unit in try await work(atrium, unit) }
        }
    }

    /// Runs `work` on each unit in turn: its bytes, its images and how long it took.
    static func timed(_ units: [[String]], _ work: ([String]) async throws -> UInt64) async throws -> [(UInt64, Int, Duration)] {
        var out: [(UInt64, Int, Duration)] = []
        for unit in units {
            let begin = ContinuousClock.now
            let bytes = try await work(unit)
            out.append((bytes, unit.count, ContinuousClock.now - begin))
        }
        return out
    }

    /// ``measure(phase:route:units:connect:extra:work:)`` with each client's whole shard run by `shardWork` (to
    /// keep one session, such as an uploader, across its units).
    static func measure(
        phase: String,
        route: String,
        units shards: [[[String]]],
        connect: @escaping Connect,
        extra: [String: Any] = [:],
        shardWork: @escaping @Sendable (AtriumClient, [[String]]) async throws -> [(UInt64, Int, Duration)]
    ) async throws -> UInt64 {
        let cpuBefore = watched.snapshot()
        let started = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: [(UInt64, Int, Duration)].self) { group in
            for shard in shards {
                group.addTask {
                    try await connect { atrium in try await shardWork(atrium, shard) }
                }
            }
            var all: [(UInt64, Int, Duration)] = []
            for try await part in group { all += part }
            return all
        }
        let seconds = Self.seconds(ContinuousClock.now - started)
        let latencies = results.map { Self.seconds($0.2) * 1000 }.sorted()
        let bytes = results.reduce(UInt64(0)) { $0 + $1.0 }
        let images = results.reduce(0) { $0 + $1.1 }
        var figures: [String: Any] = [
            "phase": phase, "route": route, "clients": shards.count, "images": images, "bytes": bytes,
            "seconds": seconds, "images_per_s": Double(images) / seconds, "mb_per_s": Double(bytes) / 1e6 / seconds,
            "p50_ms": Self.percentile(latencies, 0.50), "p99_ms": Self.percentile(latencies, 0.99),
        ]
        figures.merge(extra) { _, new in new }
        let cpuAfter = watched.snapshot()
        if !cpuAfter.isEmpty {
            var perImage: [String: Double] = [:]
            for (name, seconds) in cpuAfter { perImage[name] = (seconds - (cpuBefore[name] ?? 0)) * 1000 / Double(max(images, 1)) }
            figures["cpu_ms_per_image"] = perImage
        }
        let json = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
        print(String(decoding: json, as: UTF8.self))
        return bytes
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }
}

/// CPU seconds (user and system) of this process ("client") and of named others, from `/proc/<pid>/stat`.
struct CPUWatch: Sendable {
    let processes: [(String, Int32)]

    init(processes: [(String, Int32)]) { self.processes = processes }

    /// From a `--watch` argument: name=pid, comma-separated.
    init(_ argument: String) throws {
        var processes: [(String, Int32)] = []
        for item in argument.split(separator: ",") {
            let parts = item.split(separator: "=")
            guard parts.count == 2, let pid = Int32(parts[1]) else { throw ValidationError("--watch: '\(item)' is not name=pid") }
            processes.append((String(parts[0]), pid))
        }
        self.processes = processes
    }

    /// CPU seconds each watched process used between two snapshots (the client left out).
    static func used(from before: [String: Double], to after: [String: Double]) -> [String: Double] {
        var used: [String: Double] = [:]
        for (name, seconds) in after where name != "client" { used[name] = ((seconds - (before[name] ?? seconds)) * 1000).rounded() / 1000 }
        return used
    }

    /// Each process's CPU seconds so far; empty when nothing is watched.
    func snapshot() -> [String: Double] {
        guard !processes.isEmpty else { return [:] }
        var result: [String: Double] = [:]
        for (name, pid) in [("client", getpid())] + processes {
            if let seconds = Self.cpuSeconds(pid) { result[name] = seconds }
        }
        return result
    }

    static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After the command's closing parenthesis: state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
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

/// Hashes and drops fetched bytes: the figure is the network's, not the disk's.
final class DiscardDestination: FetchDestination {
    var resumableBytes: UInt64 { 0 }
    func rehash(into hasher: inout SHA256) {}
    func reset() {}
    func append(_ data: Data) {}
    func finish(_ image: FetchedImage) {}
    func abandon() {}
    func discard() {}
}

/// `atrium bench print`: SubmitPrintJob latency through the gateway.
struct PrintBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "print",
        abstract: "Measure SubmitPrintJob latency against a running network.",
        discussion: """
            Registers the files (at most 100), then submits --calls sequential jobs of all of them to --printer in a \
            square-ish STANDARD\\C,R film box, and prints one JSON object with p50/p99 latency in milliseconds.
            """
    )

    @OptionGroup var client: ClientOptions
    @Option(help: "The printer's subscriber ID.") var printer: String
    @Option(help: "Jobs to submit.") var calls = 500
    @Argument(help: "DICOM files for the film box.") var files: [String]

    func run() async throws {
        guard (1...100).contains(files.count) else { throw ValidationError("give 1 to 100 files") }
        let columns = Int(Double(files.count).squareRoot().rounded(.up))
        let rows = (files.count + columns - 1) / columns
        try await AtriumClient.with(try client.configuration()) { atrium in
            var ids: [String] = []
            for file in files { ids.append(try await atrium.registerImage(file: file).imageID) }
            let request = Atrium_V1_SubmitPrintJobRequest.with {
                $0.printerID = printer
                $0.imageIds = ids
                $0.filmBox = .with { $0.imageDisplayFormat = "STANDARD\\\(columns),\(rows)"; $0.filmSizeID = "14INX17IN" }
            }
            var latencies: [Double] = []
            for call in 0..<(calls + 20) {
                let begin = ContinuousClock.now
                _ = try await atrium.delivery.submitPrintJob(request, metadata: atrium.metadata)
                if call >= 20 { latencies.append(ImagesBench.seconds(ContinuousClock.now - begin) * 1000) }
            }
            latencies.sort()
            let figures: [String: Any] = [
                "phase": "print", "calls": calls, "images": ids.count,
                "p50_ms": ImagesBench.percentile(latencies, 0.50), "p99_ms": ImagesBench.percentile(latencies, 0.99),
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]), as: UTF8.self))
        }
    }
}
