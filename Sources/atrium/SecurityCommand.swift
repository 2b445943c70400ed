import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumRuntime
import AtriumSecurity
import Foundation

struct SecurityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "security",
        abstract: "Offline administration of the security database (on the machine that runs security).",
        discussion: "For day-to-day administration through the gateway, use `atrium admin ...`.",
        subcommands: [Bootstrap.self, AddSubscriber.self]
    )

    struct Bootstrap: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the first operator and print its API key, if there is no operator yet.")

        @Option(help: "The data directory (ATRIUM_DATA_DIR).")
        var dataDir = "./var"

        func run() throws {
            if let (id, key) = try SecurityService.bootstrapOperator(databasePath: SecurityConfiguration.databasePath(dataDirectory: dataDir)) {
                print("operator \(id)\nATRIUM_API_KEY=\(key)")
            } else {
                print("an operator already exists; nothing done")
            }
        }
    }

    struct AddSubscriber: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a subscriber with an API key; prints the ID and the key once.")

        @Option(help: "The data directory (ATRIUM_DATA_DIR).")
        var dataDir = "./var"

        @Option(help: "Display name.")
        var name: String

        @Option(help: "hospital, individual, vendor, printer or operator.")
        var kind: String

        @Option(help: "Comma-separated roles: register, receive, process, execute, publish, print, admin (default: the kind's).")
        var roles: String = ""

        @Option(help: "Storage quota in bytes.")
        var storageQuotaBytes: UInt64 = 1 << 40

        func run() throws {
            guard let kind = Atrium_V1_SubscriberKind(name: kind) else { throw ValidationError("unknown kind '\(kind)'") }
            var parsed: [Atrium_V1_Role] = []
            for name in roles.split(separator: ",") {
                guard let role = Atrium_V1_Role(name: String(name)) else { throw ValidationError("unknown role '\(name)'") }
                parsed.append(role)
            }
            let (id, key) = try SecurityService.createSubscriber(
                databasePath: SecurityConfiguration.databasePath(dataDirectory: dataDir),
                displayName: name,
                kind: kind,
                contract: .with {
                    $0.roles = parsed
                    $0.storageQuotaBytes = storageQuotaBytes
                }
            )
            print("subscriber \(id)\nATRIUM_API_KEY=\(key)")
        }
    }
}
