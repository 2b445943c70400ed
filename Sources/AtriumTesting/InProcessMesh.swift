import AtriumAssembly
import AtriumCore
public import AtriumRuntime
import AtriumSecurity
public import Foundation
import Synchronization
public import GRPCCore
import Logging
import ServiceLifecycle

/// Every service in this test process, over in-process links (``InProcessAssembly``): real SQLite files and blob
/// stores in a temporary directory, the real gateway admitting calls by their credentials, no processes, ports or
/// TLS. Starts in milliseconds, for tests of each service's behaviour and refusals; the process mesh
/// (``TestMesh``) stays for end-to-end tests of the processes themselves.
public final class InProcessMesh: Sendable {
    /// The data directory (removed with the mesh).
    public let directory: TemporaryDirectory
    /// The operator's API key.
    public let operatorKey: String
    /// A client link to the gateway.
    public let gateway: Connection
    private let group: ServiceGroup
    private let running: Task<Void, any Error>

    private init(directory: TemporaryDirectory, operatorKey: String, gateway: Connection, group: ServiceGroup) {
        self.directory = directory
        self.operatorKey = operatorKey
        self.gateway = gateway
        self.group = group
        self.running = Task { try await group.run() }
    }

    /// Builds and starts every service; `environment` adds `ATRIUM_*` settings, `now` is the services' clock (a
    /// ``TestClock`` moves it). Call ``stop()`` when done.
    public static func start(environment: [String: String] = [:], now: @escaping @Sendable () -> Date = { Date() }) async throws -> InProcessMesh {
        let directory = try TemporaryDirectory(prefix: "atrium-inprocess")
        var settings = [
            "ATRIUM_DATA_DIR": directory.path, "ATRIUM_GATEWAY_MTLS_PORT": "off", "ATRIUM_DELIVERY_BYTES_PORT": "off", "ATRIUM_INSTANCE_ID": "processing-1",
        ]
        settings.merge(environment) { _, new in new }
        let values = ConfigValues(settings)
        let runtime = try RuntimeConfiguration(service: .gateway, values: values)
        guard let (_, key) = try SecurityService.bootstrapOperator(databasePath: SecurityConfiguration.databasePath(dataDirectory: directory.path)) else {
            throw ConfigurationError(key: "bootstrap", problem: "a new data directory already had an operator")
        }
        let quiet = Logger(label: "atrium.test") { _ in SwiftLogNoOpLogHandler() }
        let inside = try InProcessAssembly(runtime: runtime, values: values, logger: quiet, clientLink: true, now: now)
        let group = ServiceGroup(configuration: .init(services: inside.services.map { .init(service: $0) }, logger: quiet))
        return InProcessMesh(directory: directory, operatorKey: key, gateway: inside.client!, group: group)
    }

    /// The credential metadata for `apiKey` (the operator's by default); `nil` sends none.
    public func metadata(apiKey: String? = nil) -> Metadata {
        ["authorization": "Bearer \(apiKey ?? operatorKey)"]
    }

    /// Stops every service gracefully (outboxes and audit trails flush) and waits for them.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await running.value
    }
}

/// A clock a test moves: the services of an ``InProcessMesh`` read it instead of the system clock.
public final class TestClock: Sendable {
    private let current: Mutex<Date>

    /// A clock at `start`.
    public init(_ start: Date = Date()) {
        current = Mutex(start)
    }

    /// The time now.
    public func now() -> Date { current.withLock { $0 } }

    /// Moves the clock forward.
    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }
}
