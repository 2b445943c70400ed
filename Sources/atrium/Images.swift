import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import Foundation

/// Where the network is and who the caller is; shared by every client verb.
struct ClientOptions: ParsableArguments {
    @Option(help: "The gateway's host:port (default: $ATRIUM_GATEWAY, else localhost:7443; localhost:7444 with --identity).")
    var gateway: String?

    @Option(help: "PEM file of the CA that signed the gateway's certificate (default: $ATRIUM_CA, else ./var/pki/ca.pem).")
    var ca: String?

    @Option(help: "The subscriber's API key (default: $ATRIUM_API_KEY).")
    var apiKey: String?

    @Option(help: "A directory written by `atrium enroll`: authenticate with its client certificate instead of an API key (default: $ATRIUM_IDENTITY).")
    var identity: String?

    func configuration() throws -> AtriumClientConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let ca = self.ca ?? environment["ATRIUM_CA"] ?? "./var/pki/ca.pem"
        if let directory = identity ?? environment["ATRIUM_IDENTITY"], apiKey == nil {
            guard let enrolled = EnrolledIdentity(directory: directory) else {
                throw ValidationError("--identity: no enrolled certificate in '\(directory)'; run `atrium enroll` first")
            }
            return AtriumClientConfiguration(gateway: try address(default: "localhost:\(ServiceName.gatewayMutualTLSPort)"), caPath: ca, identity: enrolled)
        }
        guard let key = apiKey ?? environment["ATRIUM_API_KEY"], !key.isEmpty else {
            throw ValidationError("no credential: pass --api-key, set ATRIUM_API_KEY, or use --identity after `atrium enroll`")
        }
        return AtriumClientConfiguration(gateway: try address(default: "localhost:7443"), caPath: ca, apiKey: key)
    }

    /// The gateway address from the option or the environment.
    func address(default fallback: String) throws -> HostAndPort {
        let text = gateway ?? ProcessInfo.processInfo.environment["ATRIUM_GATEWAY"] ?? fallback
        guard let address = HostAndPort(text) else { throw ValidationError("--gateway: expected host:port, got '\(text)'") }
        return address
    }
}

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register, inspect and fetch images.",
        subcommands: [Register.self, Show.self, Fetch.self]
    )

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register DICOM Part 10 files; prints one line per file.")

        @OptionGroup var client: ClientOptions

        @Option(help: "A comment stored with each image.")
        var comment = ""

        @Argument(help: "The files.")
        var files: [String]

        func run() async throws {
            var failures = 0
            try await AtriumClient.with(try client.configuration()) { atrium in
                for file in files {
                    do {
                        let receipt = try await atrium.registerImage(file: file, comment: comment)
                        print("\(receipt.imageID)  \(receipt.digest.sha256)  \(receipt.digest.sizeBytes) bytes\(receipt.deduplicated ? "  (already stored)" : "")  \(file)")
                    } catch {
                        failures += 1
                        print("refused  \(file): \(error)")
                    }
                }
            }
            if failures > 0 { throw ExitCode(1) }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print an image record as JSON.")

        @OptionGroup var client: ClientOptions

        @Argument(help: "The image ID.")
        var id: String

        func run() async throws {
            let record = try await AtriumClient.with(try client.configuration()) { try await $0.image(id: id) }
            print(try record.jsonString())
        }
    }

    struct Fetch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fetch an image's bytes, verified against its SHA-256.")

        @OptionGroup var client: ClientOptions

        @Argument(help: "The image ID.")
        var id: String

        @Option(name: .shortAndLong, help: "The file to write.")
        var output: String

        func run() async throws {
            let digest = try await AtriumClient.with(try client.configuration()) { try await $0.fetchImage(id: id, to: output) }
            print("\(id)  \(digest.sha256)  \(digest.sizeBytes) bytes  -> \(output)")
        }
    }
}
