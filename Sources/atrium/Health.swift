import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import AtriumTransport

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask a process for its grpc.health.v1 status; exit 0 when SERVING.",
        discussion: "Backends accept only Atrium service certificates, so the probe presents one from the PKI directory."
    )

    @Argument(help: "host:port of the process.")
    var address: String

    @Option(help: "The gRPC service to ask about (default: the whole process).")
    var service = ""

    @Option(help: "The PKI directory (default: $ATRIUM_PKI_DIR, else ./var/pki).")
    var pkiDir: String?

    @Option(help: "Whose certificate to present.")
    var identity: ServiceName = .gateway

    func run() async throws {
        guard let target = HostAndPort(address) else { throw ValidationError("expected host:port, got '\(address)'") }
        let directory = pkiDir ?? ProcessInfo.processInfo.environment["ATRIUM_PKI_DIR"] ?? "./var/pki"
        do {
            let status = try await HealthProbe.check(address: target, service: service, files: TLSFiles.service(identity, in: directory), timeout: .seconds(3))
            print(status)
            if status != "SERVING" { throw ExitCode(1) }
        } catch let error as RPCError {
            print("\(error.code): \(error.message)")
            throw ExitCode(2)
        }
    }
}

/// One health check over mTLS.
enum HealthProbe {
    static func check(address: HostAndPort, service: String = "", files: TLSFiles, timeout: Duration) async throws -> String {
        try await ClientFactory.withClient(to: address, security: .mutualTLS(files)) { client in
            var options = CallOptions.defaults
            options.timeout = timeout
            options.waitForReady = true
            let response = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.with { $0.service = service }, options: options)
            switch response.status {
            case .serving: return "SERVING"
            case .notServing: return "NOT_SERVING"
            case .serviceUnknown: return "SERVICE_UNKNOWN"
            case .unknown, .UNRECOGNIZED: return "UNKNOWN"
            }
        }
    }
}
