import SwiftProtobuf
public import AtriumAPI
public import AtriumCore
public import AtriumRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
public import ServiceLifecycle
import Synchronization
import AtriumTransport

/// The processing instances the gateway spreads calls over, and a coordinating instance spreads shards over.
///
/// - Discovery: the configured addresses (`ATRIUM_PROCESSING_ADDRS`); an address whose host is a DNS name
///   stands for every address it resolves to (compose or Kubernetes replicas), re-resolved every
///   `resolveInterval`. Each resolved address gets its own client; TLS still checks the certificate against
///   the configured name.
/// - Health: every `probeInterval` each instance is asked `grpc.health.v1.Health/Check` for
///   `atrium.v1.Processing` and `ProcessingInternal/GetLoad`. One that does not answer SERVING is taken out
///   of rotation until it does again. A call that fails to connect takes its instance out at once. A pool that
///   nobody has used for `idleAfter` probes only every `idleProbeInterval`, so an idle mesh stays idle; the
///   first use after that probes at once and brings back the short interval, and ``currentRotation()`` (for
///   callers about to send a whole batch) waits for a fresh round first.
/// - Picking: power of two choices among healthy instances, on calls outstanding from this process plus the
///   queue length the instance reports.
/// - Splitting: ``Instance/spareCapacity`` weighs an instance's share of a batch.
public final class ProcessingPool: Service, Sendable {
    /// One resolved processing address.
    public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
        /// The address to connect to (an IP literal after resolution).
        public var address: HostAndPort
        /// The configured host name, for TLS verification.
        public var name: String

        public var description: String { "\(address.host):\(address.port)" }
    }

    /// A connected instance and what the pool knows about its load.
    public final class Instance: Sendable {
        public let endpoint: Endpoint
        public let client: Connection
        private let state = Mutex<(healthy: Bool, outstanding: Int, report: Atrium_V1_LoadReport)>((false, 0, .init()))

        init(endpoint: Endpoint, client: Connection) {
            self.endpoint = endpoint
            self.client = client
        }

        public var healthy: Bool { state.withLock { $0.healthy } }
        public var score: Int { state.withLock { $0.outstanding + Int($0.report.queueLength) } }

        func setHealthy(_ healthy: Bool) { state.withLock { $0.healthy = healthy } }
        /// The instance ID it reported (job IDs end with it); empty before its first report.
        public var instanceID: String { state.withLock { $0.report.instanceID } }

        /// How much of a batch this instance should take, relative to the others (see
        /// ``ProcessingPool/spareCapacity(of:outstanding:)``), counting what this process has sent it since its last report.
        public var spareCapacity: Double {
            state.withLock { ProcessingPool.spareCapacity(of: $0.report, outstanding: $0.outstanding) }
        }

        func report(_ report: Atrium_V1_LoadReport) { state.withLock { $0.report = report } }
        public func begin() { state.withLock { $0.outstanding += 1 } }
        public func end() { state.withLock { $0.outstanding -= 1 } }
    }

    private let configured: [HostAndPort]
    private let makeClient: @Sendable (Endpoint) throws -> Connection
    private let instances = Mutex<[Endpoint: Instance]>([:])
    private let resolveInterval: Duration
    private let probeInterval: Duration
    private let idleProbeInterval: Duration
    private let idleAfter: Duration
    /// When the pool was last asked for an instance; `nil` before the first time.
    private let lastUse = Mutex<ContinuousClock.Instant?>(nil)
    /// When the last round of probes ended.
    private let lastRound = Mutex<ContinuousClock.Instant?>(nil)
    /// Rung by the first use after an idle spell, to probe at once.
    private let probeNow = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    private let logger: Logger
    /// Clients started by `run`, to run their connections; removed ones are shut down.
    private let launches = AsyncStream<Instance>.makeStream()

    public init(
        addresses: [HostAndPort],
        resolveInterval: Duration = .seconds(10),
        probeInterval: Duration = .seconds(1),
        idleProbeInterval: Duration = .seconds(15),
        idleAfter: Duration = .seconds(60),
        logger: Logger,
        makeClient: @escaping @Sendable (Endpoint) throws -> Connection
    ) {
        self.configured = addresses
        self.resolveInterval = resolveInterval
        self.probeInterval = probeInterval
        self.idleProbeInterval = max(probeInterval, idleProbeInterval)
        self.idleAfter = idleAfter
        self.logger = logger
        self.makeClient = makeClient
    }

    /// An instance's weight when a batch is split: its workers over the work it already has beyond them (queued, in
    /// flight, and `outstanding` calls not yet in its report), so an idle instance weighs its worker count and a busy
    /// one less, never zero.
    public static func spareCapacity(of report: Atrium_V1_LoadReport, outstanding: Int = 0) -> Double {
        let workers = Double(max(1, report.workerCount))
        let busy = Double(report.queueLength) + Double(report.inFlight) + Double(outstanding)
        return workers / (1 + max(0, busy - workers))
    }

    /// A healthy instance by power of two choices, or `nil` when none is healthy.
    public func pick() -> Instance? {
        let healthy = inRotation()
        guard healthy.count > 1 else { return healthy.first }
        let first = Int.random(in: 0..<healthy.count)
        var second = Int.random(in: 0..<(healthy.count - 1))
        if second >= first { second += 1 }
        return healthy[first].score <= healthy[second].score ? healthy[first] : healthy[second]
    }

    /// The instance that reported `instanceID`, healthy or not.
    public func instance(reporting instanceID: String) -> Instance? {
        noteUse()
        return all.first { $0.instanceID == instanceID }
    }

    /// The healthy instances, for a caller about to use them (a use keeps the probes at the short interval).
    public func inRotation() -> [Instance] {
        noteUse()
        return all.filter(\.healthy)
    }

    /// The healthy instances, as a round of probes no older than `probeInterval` found them: for a caller about to
    /// split a batch, for whom a figure from an idle spell would be stale.
    public func currentRotation() async -> [Instance] {
        noteUse()
        let now = ContinuousClock.now
        if lastRound.withLock({ $0.map { $0.duration(to: now) >= probeInterval } ?? true }) { await probeAll() }
        return all.filter(\.healthy)
    }

    private func noteUse() {
        let now = ContinuousClock.now
        let wasIdle = lastUse.withLock { last in
            defer { last = now }
            return last.map { $0.duration(to: now) >= idleAfter } ?? true
        }
        if wasIdle { probeNow.continuation.yield() }
    }

    /// Whether a round of probes is due: every `probeInterval` while the pool is in use, every `idleProbeInterval`
    /// once it is idle.
    private var probeDue: Bool {
        let now = ContinuousClock.now
        let busy = lastUse.withLock { last in last.map { $0.duration(to: now) < idleAfter } ?? false }
        let since = lastRound.withLock { last in last.map { $0.duration(to: now) } } ?? .seconds(1 << 40)
        // A little early rather than a whole interval late: the timer and the round do not line up exactly.
        return since >= (busy ? probeInterval : idleProbeInterval) - probeInterval / 4
    }

    /// Every known instance (tests and the benchmark).
    public var all: [Instance] { instances.withLock { Array($0.values) } }

    /// Takes an instance out of rotation after a failed connection; the next probe may put it back.
    public func markFailed(_ instance: Instance) {
        if instance.healthy {
            logger.warning("processing instance failed; out of rotation", metadata: ["instance": "\(instance.endpoint)"])
        }
        instance.setHealthy(false)
    }

    public func run() async throws {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.loop(every: self.resolveInterval) { await self.resolve() } }
            // A round of probes whenever `probeDue` says so (checked every `probeInterval`), and at once when the first
            // use after an idle spell rings.
            group.addTask {
                while !Task.isCancelled {
                    if self.probeDue { self.probeNow.continuation.yield() }
                    try? await Task.sleep(for: self.probeInterval)
                }
            }
            group.addTask {
                for await _ in self.probeNow.stream { await self.probeAll() }
            }
            group.addTask {
                try? await gracefulShutdown()
                self.launches.continuation.finish()
                self.probeNow.continuation.finish()
            }
            for await instance in launches.stream {
                group.addTask { try? await instance.client.runConnections() }
            }
            for instance in all { instance.client.beginGracefulShutdown() }
            group.cancelAll()
        }
    }

    private func loop(every interval: Duration, _ body: @Sendable () async -> Void) async {
        while !Task.isCancelled {
            await body()
            try? await Task.sleep(for: interval)
        }
    }

    /// Brings the instance set in line with what the configured names resolve to now.
    func resolve() async {
        var wanted: Set<Endpoint> = []
        for address in configured {
            let resolved = await Self.resolve(address.host)
            if resolved.isEmpty {
                logger.warning("cannot resolve processing address", metadata: ["address": "\(address.host):\(address.port)"])
            }
            for host in resolved {
                wanted.insert(Endpoint(address: HostAndPort(host: host, port: address.port), name: address.host))
            }
        }
        // A name that stops resolving keeps its instances: DNS trouble should not empty the pool.
        guard !wanted.isEmpty else { return }
        var added: [Instance] = []
        let removed: [Instance] = instances.withLock { instances in
            for endpoint in wanted where instances[endpoint] == nil {
                guard let client = try? makeClient(endpoint) else { continue }
                let instance = Instance(endpoint: endpoint, client: client)
                instances[endpoint] = instance
                added.append(instance)
            }
            let gone = instances.keys.filter { !wanted.contains($0) }
            return gone.compactMap { instances.removeValue(forKey: $0) }
        }
        for instance in added {
            launches.continuation.yield(instance)
            logger.info("processing instance added", metadata: ["instance": "\(instance.endpoint)"])
            await probe(instance)
        }
        for instance in removed {
            instance.client.beginGracefulShutdown()
            logger.info("processing instance removed", metadata: ["instance": "\(instance.endpoint)"])
        }
    }

    private func probeAll() async {
        await withDiscardingTaskGroup { group in
            for instance in all {
                group.addTask { await self.probe(instance) }
            }
        }
        lastRound.withLock { $0 = .now }
    }

    /// Asks one instance for its health and load.
    private func probe(_ instance: Instance) async {
        var options = CallOptions.defaults
        options.timeout = .seconds(1)
        options.waitForReady = false
        let health = instance.client.health
        let load = instance.client.processingInternal
        var serving: Bool
        do {
            let status = try await health.check(.with { $0.service = Atrium_V1_Processing.descriptor.fullyQualifiedService }, options: options)
            serving = status.status == .serving
            if serving {
                let report = try await load.getLoad(Atrium_V1_GetLoadRequest(), options: options)
                instance.report(report)
                serving = !report.draining
            }
        } catch {
            if instance.healthy {
                logger.warning("processing instance failed its health check", metadata: ["instance": "\(instance.endpoint)", LogKey.error: "\(error)"])
            }
            instance.setHealthy(false)
            return
        }
        if serving != instance.healthy {
            logger.info(serving ? "processing instance in rotation" : "processing instance not serving", metadata: ["instance": "\(instance.endpoint)"])
        }
        instance.setHealthy(serving)
    }

    /// The IP addresses of `host`: itself when it is an IP literal, else every A and AAAA record.
    static func resolve(_ host: String) async -> [String] {
        if ClientFactory.isIPLiteral(host) { return [host] }
        return await Task.detached {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [String] = []
            var cursor: UnsafeMutablePointer<addrinfo>? = first
            while let entry = cursor {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST) == 0 {
                    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if !addresses.contains(text) { addresses.append(text) }
                }
                cursor = entry.pointee.ai_next
            }
            return addresses
        }.value
    }
}
