public import ArgumentParser
import AtriumAssembly
public import AtriumCore
import AtriumRuntime
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

extension ServiceName: ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one Atrium process until SIGTERM or SIGINT: one service, or all of them.",
        discussion: """
            `atrium serve <service>` runs one service with its own listener (mTLS for backends), calling the others \
            over the network: what `atrium up --split` and the containers run. `atrium serve all` runs every \
            service in this one process, calling each other in-process; only the gateway's listeners are open.
            Configuration comes from ATRIUM_* environment variables and the env-file named by ATRIUM_CONFIG_FILE; \
            see docs/operations.md.
            """
    )

    @Argument(help: "The service (\(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))), or all.")
    var service: String

    func validate() throws {
        guard service == "all" || ServiceName(rawValue: service) != nil else {
            throw ValidationError("'\(service)' is not a service; expected all or one of \(ServiceName.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() async throws {
        let values = try ConfigValues.fromEnvironment(ProcessInfo.processInfo.environment)
        let single = ServiceName(rawValue: service)
        // `all` listens as the gateway does.
        let runtime = try RuntimeConfiguration(service: single ?? .gateway, values: values)
        LineLogHandler.bootstrap(level: runtime.logLevel, format: runtime.logFormat)
        var logger = Logger(label: "atrium.\(service)")
        logger[metadataKey: LogKey.service] = "\(service)"
        let services = try single.map { try ProcessAssembly.single($0, runtime: runtime, values: values, logger: logger) }
            ?? ProcessAssembly.all(runtime: runtime, values: values, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }
}
