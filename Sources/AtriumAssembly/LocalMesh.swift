public import AtriumCore
public import Foundation
import AtriumRuntime

/// Starts the whole mesh on this machine: one `atrium serve all` process (every service, in-process calls), or
/// separate `atrium serve <service>` processes (`split`). What `atrium up` runs, and what the integration tests
/// start.
///
/// Each process gets its own port (fixed, or 0 for an ephemeral one that it reports through a port file),
/// a log file under `<data>/log/`, and the addresses of the processes it calls. Backends start first; the
/// gateway starts once every backend has bound its port. Every process is tied to this one by a ``Lifeline``:
/// when this process ends, however it ends, they stop too.
public final class LocalMesh: @unchecked Sendable {
    /// One process of the mesh.
    public struct Instance: Sendable, Hashable, CustomStringConvertible {
        /// The service it runs.
        public var service: ServiceName
        /// 1, 2, ... for replicated services (processing), otherwise 1; 0 for ``whole``.
        public var ordinal: Int
        /// `registry`, `processing-2`, ..., or `atrium` for ``whole``.
        public var description: String {
            if self == .whole { return "atrium" }
            return service == .processing ? "\(service)-\(ordinal)" : service.rawValue
        }

        /// The one process of a mesh that is not split: every service, listening as the gateway.
        public static let whole = Instance(.gateway, 0)

        /// An instance.
        public init(_ service: ServiceName, _ ordinal: Int = 1) {
            self.service = service
            self.ordinal = ordinal
        }
    }

    /// What to start.
    public struct Plan: Sendable {
        /// The `atrium` executable.
        public var binary: String
        /// The data root (`ATRIUM_DATA_DIR`); the PKI lives in `<data>/pki` unless `pkiDirectory` is set.
        public var dataDirectory: String
        /// The PKI directory.
        public var pkiDirectory: String
        /// Number of processing instances (split meshes; one process runs one in-process instance).
        public var processingInstances: Int
        /// One process per service (`atrium up --split`, the containers' topology) instead of one for all.
        public var split: Bool
        /// Use ephemeral ports (tests) instead of the default ports (`atrium up`).
        public var ephemeralPorts: Bool
        /// Extra `ATRIUM_*` settings for every process.
        public var environment: [String: String]

        /// A plan with defaults: one process, default ports (split: two processing instances).
        public init(
            binary: String,
            dataDirectory: String,
            split: Bool = false,
            processingInstances: Int = 2,
            ephemeralPorts: Bool = false,
            environment: [String: String] = [:]
        ) {
            self.binary = binary
            self.dataDirectory = dataDirectory
            self.pkiDirectory = "\(dataDirectory)/pki"
            self.split = split
            self.processingInstances = processingInstances
            self.ephemeralPorts = ephemeralPorts
            self.environment = environment
        }

        /// Every instance, in start order (the gateway last).
        public var instances: [Instance] {
            guard split else { return [.whole] }
            var result: [Instance] = [Instance(.security), Instance(.registry)]
            result += (1...max(1, processingInstances)).map { Instance(.processing, $0) }
            result += [Instance(.catalog), Instance(.backup), Instance(.delivery), Instance(.gateway)]
            return result
        }
    }

    private let plan: Plan
    private let lock = NSLock()
    private var processes: [Instance: Process] = [:]
    /// Instances that exited while still part of the mesh (not stopped, killed or restarted by it).
    private let exits = AsyncStream<Instance>.makeStream()
    private var ports: [Instance: Int] = [:]
    private var mutualTLSPort: Int?

    private init(plan: Plan) {
        self.plan = plan
    }

    /// Creates the PKI if needed and starts every instance; returns once all have bound their ports.
    public static func start(_ plan: Plan, timeout: Duration = .seconds(30)) async throws -> LocalMesh {
        try DevelopmentPKI.ensure(directory: plan.pkiDirectory)
        try FileManager.default.createDirectory(atPath: "\(plan.dataDirectory)/log", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(plan.dataDirectory)/run", withIntermediateDirectories: true)
        let mesh = LocalMesh(plan: plan)
        if plan.ephemeralPorts && plan.split {
            // The registry and delivery call each other (share notices; resolving images), so one of them must know
            // the other's port before it has started: delivery's is chosen here.
            mesh.ports[Instance(.delivery)] = try freePort()
            // Processing instances split batches between them, so each must know the others' ports at start.
            for instance in plan.instances where instance.service == .processing {
                mesh.ports[instance] = try freePort()
            }
        }
        do {
            for instance in plan.instances {
                try await mesh.launch(instance, timeout: timeout)
            }
        } catch {
            mesh.stop()
            throw error
        }
        return mesh
    }

    /// The address an instance listens on.
    public func address(of instance: Instance) -> HostAndPort {
        lock.withLock { HostAndPort(host: "127.0.0.1", port: ports[instance] ?? 0) }
    }

    /// The gateway's address.
    public var gatewayAddress: HostAndPort { address(of: plan.split ? Instance(.gateway) : .whole) }

    /// The gateway's client-certificate listener.
    public var gatewayMutualTLSAddress: HostAndPort {
        HostAndPort(host: "127.0.0.1", port: lock.withLock { mutualTLSPort } ?? ServiceName.gatewayMutualTLSPort)
    }

    /// Delivery's data plane (HTTPS for the byte path), once it has reported its port; `nil` before that or
    /// when it is off.
    /// The registry's upload plane, when it runs as its own process.
    public var uploadPlaneAddress: HostAndPort? {
        guard plan.split else { return nil }
        return PortFile.read(portFile(of: Instance(.registry)) + ".uploads").map { HostAndPort(host: "127.0.0.1", port: $0) }
    }

    public var dataPlaneAddress: HostAndPort? {
        PortFile.read(portFile(of: plan.split ? Instance(.delivery) : .whole) + ".bytes").map { HostAndPort(host: "127.0.0.1", port: $0) }
    }

    /// Every instance with its address.
    public var endpoints: [(instance: Instance, address: HostAndPort)] {
        plan.instances.map { ($0, address(of: $0)) }
    }

    /// The process ID of an instance, if running.
    public func processIdentifier(of instance: Instance) -> Int32? {
        lock.withLock { processes[instance].map(\.processIdentifier) }
    }

    /// The log file of an instance.
    public func logPath(of instance: Instance) -> String {
        "\(plan.dataDirectory)/log/\(instance).log"
    }

    /// Sends `signal` to an instance and waits for it to exit.
    public func kill(_ instance: Instance, signal: Int32 = SIGKILL) {
        guard let process = lock.withLock({ processes.removeValue(forKey: instance) }) else { return }
        Foundation.kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    /// Starts an instance again on the same port.
    public func restart(_ instance: Instance, timeout: Duration = .seconds(30)) async throws {
        kill(instance, signal: SIGTERM)
        try await launch(instance, timeout: timeout)
    }

    /// Stops every instance: SIGTERM, then SIGKILL for any still running after 10 s.
    public func stop() {
        let running = lock.withLock { () -> [Process] in
            let all = Array(processes.values)
            processes.removeAll()
            return all
        }
        exits.continuation.finish()
        for process in running where process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(10)
        for process in running {
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// Waits until an instance exits on its own (not by ``stop()``, ``kill(_:signal:)`` or ``restart(_:timeout:)``);
    /// returns it, or `nil` once the mesh is stopped. Used by `atrium up` to notice a crashed process.
    public func firstExit() async -> Instance? {
        for await instance in exits.stream { return instance }
        return nil
    }

    private func environment(for instance: Instance) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("ATRIUM_") }
        environment.merge(plan.environment) { _, new in new }
        environment["ATRIUM_DATA_DIR"] = plan.dataDirectory
        environment["ATRIUM_PKI_DIR"] = plan.pkiDirectory
        environment["ATRIUM_LISTEN_HOST"] = "127.0.0.1"
        environment["ATRIUM_PORT_FILE"] = portFile(of: instance)
        let known = lock.withLock { ports }
        let fixedPort = instance.service.defaultPort + (instance.service == .processing ? instance.ordinal - 1 : 0)
        environment["ATRIUM_PORT"] = "\(known[instance] ?? (plan.ephemeralPorts ? 0 : fixedPort))"
        if instance.service == .processing || instance == .whole {
            // Each instance keeps its own jobs, under a name that survives restarts.
            environment["ATRIUM_INSTANCE_ID"] = instance == .whole ? "processing-1" : "\(instance)"
        }
        if instance.service == .delivery || instance == .whole, plan.environment["ATRIUM_DELIVERY_BYTES_PORT"] != "off" {
            environment["ATRIUM_DELIVERY_BYTES_PORT"] = "\(plan.ephemeralPorts ? 0 : ServiceName.deliveryBytesPort)"
        }
        if instance.service == .registry, plan.environment["ATRIUM_REGISTRY_UPLOAD_PORT"] != "off" {
            environment["ATRIUM_REGISTRY_UPLOAD_PORT"] = "\(plan.ephemeralPorts ? 0 : ServiceName.registryUploadPort)"
        }
        if instance.service == .gateway {
            let port = lock.withLock { mutualTLSPort } ?? (plan.ephemeralPorts ? 0 : ServiceName.gatewayMutualTLSPort)
            environment["ATRIUM_GATEWAY_MTLS_PORT"] = "\(port)"
        }
        for peer in plan.instances where peer.service != .gateway && plan.split {
            // Processing instances know each other from the start (fixed ports, or ports reserved up front).
            let fixed = peer.service == .processing && !plan.ephemeralPorts ? peer.service.defaultPort + peer.ordinal - 1 : nil
            guard let port = known[peer] ?? fixed else { continue }
            if peer.service == .processing {
                let key = "ATRIUM_PROCESSING_ADDRS"
                environment[key] = [environment[key], "127.0.0.1:\(port)"].compactMap { $0 }.joined(separator: ",")
            } else {
                environment["ATRIUM_\(peer.service.rawValue.uppercased())_ADDR"] = "127.0.0.1:\(port)"
            }
        }
        return environment
    }

    private func portFile(of instance: Instance) -> String {
        "\(plan.dataDirectory)/run/\(instance).port"
    }

    private func launch(_ instance: Instance, timeout: Duration) async throws {
        let portFile = portFile(of: instance)
        try? FileManager.default.removeItem(atPath: portFile)
        try? FileManager.default.removeItem(atPath: portFile + ".mtls")
        try? FileManager.default.removeItem(atPath: portFile + ".bytes")
        try? FileManager.default.removeItem(atPath: portFile + ".uploads")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: plan.binary)
        process.arguments = ["serve", instance == .whole ? "all" : instance.service.rawValue]
        process.environment = environment(for: instance)
        let logPath = logPath(of: instance)
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try log.seekToEnd()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        Lifeline.tie(process)
        process.terminationHandler = { [weak self] exited in
            guard let self else { return }
            let current = self.lock.withLock { self.processes[instance] === exited }
            if current { self.exits.continuation.yield(instance) }
        }
        try process.run()
        lock.withLock { processes[instance] = process }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let port = PortFile.read(portFile) {
                // The gateway's client-certificate listener reports its port separately.
                if instance.service == .gateway {
                    guard let mutual = PortFile.read(portFile + ".mtls") else {
                        try await Task.sleep(for: .milliseconds(25))
                        continue
                    }
                    lock.withLock { mutualTLSPort = mutual }
                }
                // So does delivery's data plane, unless it is off.
                if instance.service == .delivery || instance == .whole, plan.environment["ATRIUM_DELIVERY_BYTES_PORT"] != "off",
                    PortFile.read(portFile + ".bytes") == nil
                {
                    try await Task.sleep(for: .milliseconds(25))
                    continue
                }
                // And the registry's upload plane, in its own process.
                if instance.service == .registry, plan.environment["ATRIUM_REGISTRY_UPLOAD_PORT"] != "off", PortFile.read(portFile + ".uploads") == nil {
                    try await Task.sleep(for: .milliseconds(25))
                    continue
                }
                lock.withLock { ports[instance] = port }
                return
            }
            guard process.isRunning else {
                throw ConfigurationError(key: "\(instance)", problem: "exited with status \(process.terminationStatus) during start-up; see \(logPath)")
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw ConfigurationError(key: "\(instance)", problem: "did not start listening within \(timeout); see \(logPath)")
    }
}

/// A TCP port free on 127.0.0.1 right now, taken from below the kernel's ephemeral range (which starts at 32768
/// by default): the kernel never hands those out to other `bind(0)` calls or outgoing connections, so the port is
/// still free when the process it is meant for binds it a moment later.
func freePort() throws -> Int {
    var generator = SystemRandomNumberGenerator()
    for _ in 0..<200 {
        let port = Int.random(in: 20_000..<32_000, using: &generator)
        if try canBind(port) { return port }
    }
    throw ConfigurationError(key: "ATRIUM_PORT", problem: "no free port found in 20000-31999 on 127.0.0.1")
}

/// Whether `port` can be bound on 127.0.0.1 now.
private func canBind(_ port: Int) throws -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ConfigurationError(key: "ATRIUM_PORT", problem: "cannot open a socket to find a free port") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}
