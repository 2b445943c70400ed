import ArgumentParser
import AtriumClient
import AtriumCore
import AtriumRuntime
import AtriumSecurity
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import AtriumTransport
import AtriumAssembly

struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the whole mesh on this machine until Ctrl-C.",
        discussion: """
            Starts every service in one `atrium serve all` process, calling each other in-process, or with --split             each service as its own `atrium serve` process (mTLS between them, two processing instances by             default), as the containers run them. State lives under --data-dir, with a development PKI made on             first start in <data-dir>/pki. The first start creates an operator and prints its API key once. Logs             go to <data-dir>/log/<process>.log.
            """
    )

    @Option(help: "Where state, PKI and logs live.")
    var dataDir = "./var"

    @Flag(help: "One process per service, as the containers run them, instead of one process for all.")
    var split = false

    @Option(help: "Number of processing instances (with --split; one process runs one).")
    var processing = 2

    @Flag(help: "Let every process pick a free port instead of the defaults (gateway 7443, backends 7501-7507).")
    var ephemeralPorts = false

    @Option(name: .customLong("env"), help: "A setting for every process, KEY=VALUE (repeatable), e.g. --env ATRIUM_PROCESSING_WORKERS=1.")
    var settings: [String] = []

    func validate() throws {
        for setting in settings where !setting.hasPrefix("ATRIUM_") || !setting.contains("=") {
            throw ValidationError("--env takes ATRIUM_KEY=VALUE, not '\(setting)'")
        }
    }

    func run() async throws {
        LineLogHandler.bootstrap(level: .info, format: .text)
        let dataDirectory = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        let started = ContinuousClock.now
        let plan = LocalMesh.Plan(
            binary: try ExecutablePath.current(),
            dataDirectory: dataDirectory,
            split: split,
            processingInstances: processing,
            ephemeralPorts: ephemeralPorts,
            environment: Dictionary(settings.map { setting in
                let parts = setting.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                return (parts[0], parts[1])
            }, uniquingKeysWith: { _, last in last })
        )
        try DevelopmentPKI.ensure(directory: plan.pkiDirectory)
        // Printed before anything else can fail: the key exists only in this output.
        if let (subscriberID, key) = try SecurityService.bootstrapOperator(databasePath: SecurityConfiguration.databasePath(dataDirectory: dataDirectory)) {
            say("""
                Created the operator \(subscriberID). Its API key is shown only this once:
                  export ATRIUM_API_KEY=\(key)

                """)
        }
        let mesh = try await LocalMesh.start(plan)
        let identity = TLSFiles.service(.gateway, in: plan.pkiDirectory)
        say("Atrium is up (\(AtriumVersion.text)); data in \(dataDirectory)")
        var silent: [String] = []
        var listeners = mesh.endpoints.map { endpoint in
            let role = endpoint.instance == .whole ? "every service; public, TLS" : endpoint.instance.service == .gateway ? "public, TLS" : "internal, mTLS"
            return (name: endpoint.instance.description, address: endpoint.address, role: role)
        }
        listeners.append((name: "gateway-mtls", address: mesh.gatewayMutualTLSAddress, role: "public, client certificates"))
        for listener in listeners {
            let status = (try? await HealthProbe.check(address: listener.address, files: identity, timeout: .seconds(10))) ?? "NO ANSWER"
            if status != "SERVING" { silent.append(listener.name) }
            say("  \(listener.name.padding(toLength: 13, withPad: " ", startingAt: 0)) \(listener.address.description.padding(toLength: 16, withPad: " ", startingAt: 0)) \(status.padding(toLength: 10, withPad: " ", startingAt: 0)) \(listener.role)")
        }
        var planes: [(name: String, address: HostAndPort, role: String)] = []
        if let dataPlane = mesh.dataPlaneAddress {
            planes.append(("data-plane", dataPlane, mesh.uploadPlaneAddress == nil ? "public, HTTPS, image bytes (AuthorizeFetch, AuthorizeUpload)" : "public, HTTPS, image bytes for AuthorizeFetch"))
        }
        if let uploads = mesh.uploadPlaneAddress { planes.append(("upload-plane", uploads, "public, HTTPS, uploads for AuthorizeUpload")) }
        for plane in planes {
            let status = await DataPlaneProbe.check(plane.address, caPath: "\(plan.pkiDirectory)/ca.pem")
            if status != "SERVING" { silent.append(plane.name) }
            say("  \(plane.name.padding(toLength: 13, withPad: " ", startingAt: 0)) \(plane.address.description.padding(toLength: 16, withPad: " ", startingAt: 0)) \(status.padding(toLength: 10, withPad: " ", startingAt: 0)) \(plane.role)")
        }
        guard silent.isEmpty else {
            say("not serving: \(silent.joined(separator: ", ")); see \(dataDirectory)/log/. Stopping.")
            mesh.stop()
            throw ExitCode(1)
        }
        say("all processes answered their health checks in \(started.duration(to: .now).formatted(.units(allowed: [.seconds, .milliseconds])))")
        say("""

            To use it from another terminal:
              export ATRIUM_GATEWAY=\(mesh.gatewayAddress) ATRIUM_CA=\(plan.pkiDirectory)/ca.pem
              atrium whoami                      # the operator
              atrium admin subscribers create --name "St Mary's" --kind hospital
            """)
        say("\nPress Ctrl-C to stop.")
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: MeshService(mesh: mesh))],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: Logger(label: "atrium.up")
        ))
        try await group.run()
        say("stopped")
    }
}

/// Keeps the mesh running inside a ServiceGroup; stops every process on shutdown or when one dies.
struct MeshService: Service {
    let mesh: LocalMesh

    func run() async throws {
        await withGracefulShutdownHandler {
            if let exited = await mesh.firstExit() {
                say("\(exited) exited; see \(mesh.logPath(of: exited)). Stopping the mesh.")
            }
        } onGracefulShutdown: {
            mesh.stop()
        }
        mesh.stop()
    }
}

enum ExecutablePath {
    /// The path of the running executable.
    static func current() throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }
}

/// Writes a line to standard output at once (print is block-buffered when stdout is a pipe).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
