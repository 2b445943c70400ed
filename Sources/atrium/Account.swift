import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore

struct Enroll: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enrol this machine as a subscriber with a one-time token: makes a key pair here and stores the issued certificate.",
        discussion: "Afterwards use --identity DIR (or ATRIUM_IDENTITY) against the gateway's client-certificate port (7444)."
    )

    @Option(help: "The one-time token from `atrium admin enroll-token create`.") var token: String
    @Option(help: "Where to store subscriber.pem, subscriber.key and ca.pem.") var out = "./var/identity"
    @Option(help: "The gateway's host:port (default: $ATRIUM_GATEWAY, else localhost:7443).") var gateway: String?
    @Option(help: "PEM file of the CA that signed the gateway's certificate (default: $ATRIUM_CA, else ./var/pki/ca.pem).") var ca: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let text = gateway ?? environment["ATRIUM_GATEWAY"] ?? "localhost:7443"
        guard let address = HostAndPort(text) else { throw ValidationError("--gateway: expected host:port, got '\(text)'") }
        do {
            let identity = try await AtriumClient.enroll(gateway: address, caPath: ca ?? environment["ATRIUM_CA"] ?? "./var/pki/ca.pem", token: token, into: out)
            print("enrolled as \(identity.subscriberID)\ncertificate: \(identity.certificatePath)\nATRIUM_IDENTITY=\(identity.directory)")
        } catch let error as RPCError {
            throw CLIError("\(error.code.statusName): \(error.message)")
        }
    }
}

struct WhoAmI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show the subscriber the credential belongs to.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let subscriber = try await withAtrium(client) { atrium in try await atrium.account.whoAmI(.init(), metadata: atrium.metadata) }
        try output.print(subscriber) { Describe.subscriber(subscriber) }
    }
}

struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "Storage and metered usage of the current month.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Operators: another subscriber's usage.") var subscriber: String?

    func run() async throws {
        let usage = try await withAtrium(client) { atrium in
            if let subscriber {
                return try await atrium.admin.getSubscriberUsage(.with { $0.subscriberID = subscriber }, metadata: atrium.metadata)
            }
            return try await atrium.account.getUsage(.init(), metadata: atrium.metadata)
        }
        try output.print(usage) {
            """
            \(usage.subscriberID), \(usage.period)
              storage: \(usage.storageUsedBytes) bytes used, \(usage.storageReservedBytes) reserved, quota \(usage.storageQuotaBytes)\(usage.storageWarning ? "  (WARNING: above threshold)" : "")
              stored: \(String(format: "%.6f", usage.storedGbMonths)) GB-months
              deliveries: \(usage.deliveries) images, \(usage.deliveredBytes) bytes
              processing: \(usage.processedImages) images, \(usage.processedBytes) bytes, \(usage.processingCpuSeconds) CPU-seconds
            """
        }
    }
}

struct StatementCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "statement", abstract: "The bill of one month: fixed fees plus metered usage.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "The month, YYYY-MM (default: this month, UTC).") var period: String?
    @Option(help: "Operators: another subscriber's statement.") var subscriber: String?

    func run() async throws {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM"
        formatter.timeZone = TimeZone(identifier: "UTC")
        let month = period ?? formatter.string(from: Date())
        let statement = try await withAtrium(client) { atrium in
            if let subscriber {
                return try await atrium.admin.getSubscriberStatement(.with { $0.subscriberID = subscriber; $0.period = month }, metadata: atrium.metadata)
            }
            return try await atrium.account.getStatement(.with { $0.period = month }, metadata: atrium.metadata)
        }
        try output.print(statement) {
            var lines = ["statement \(statement.subscriberID) \(statement.period)\(statement.final ? "" : " (accruing)")"]
            for line in statement.lines {
                lines.append("  \(line.item): \(line.quantity) \(line.unit) × \(Money.text(line.unitPrice)) = \(Money.text(line.amount))")
            }
            lines.append("  total: \(Money.text(statement.total))")
            return lines.joined(separator: "\n")
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The audit log: who accessed what, and whether the chain is intact.",
        subcommands: [Query.self, Accesses.self, Verify.self]
    )

    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Operators: entries matching every filter given.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "Caller subscriber ID.") var subscriber = ""
        @Option(help: "Resource ID (an image, a subscriber...).") var resource = ""
        @Option(help: "Patient ID.") var patient = ""
        @Option(help: "Full method, e.g. atrium.v1.Delivery/Fetch.") var method = ""
        @Option(name: .customLong("request-id"), help: "One call's request ID: the gateway's entry and the entries of the services it reached.")
        var requestID = ""
        @Option(help: "At most this many entries.") var limit: UInt32 = 100

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                try await atrium.admin.queryAuditLog(
                    .with {
                        $0.subscriberID = subscriber
                        $0.resourceID = resource
                        $0.patientID = patient
                        $0.method = method
                        $0.requestID = requestID
                        $0.page = .with { $0.pageSize = min(limit, 1000) }
                    },
                    metadata: atrium.metadata
                )
            }
            try output.print(response) { Audit.lines(response.entries) }
        }
    }

    struct Accesses: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Who accessed your images and your patients' images.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions
        @Option(help: "At most this many entries.") var limit: UInt32 = 100

        func run() async throws {
            let response = try await withAtrium(client) { atrium in
                try await atrium.account.listAccesses(.with { $0.page = .with { $0.pageSize = min(limit, 1000) } }, metadata: atrium.metadata)
            }
            try output.print(response) { Audit.lines(response.entries) }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Operators: recompute the hash chain and report the first broken entry.")
        @OptionGroup var client: ClientOptions
        @OptionGroup var output: OutputOptions

        func run() async throws {
            let result = try await withAtrium(client) { atrium in try await atrium.admin.verifyAuditLog(.init(), metadata: atrium.metadata) }
            try output.print(result) {
                result.intact ? "intact: \(result.entriesChecked) entries" : "BROKEN at entry \(result.firstBrokenSequence): \(result.detail)"
            }
            if !result.intact { throw ExitCode(2) }
        }
    }

    static func lines(_ entries: [Atrium_V1_AuditEntry]) -> String {
        entries.map { entry in
            "\(entry.sequence)  \(Describe.time(entry.time))  \(entry.subscriberID.isEmpty ? "-" : entry.subscriberID)  \(entry.method)  \(entry.resourceID.isEmpty ? "-" : entry.resourceID)  \(entry.outcome)  \(entry.requestID.isEmpty ? "-" : entry.requestID)"
        }.joined(separator: "\n")
    }
}

enum Money {
    static func text(_ money: Atrium_V1_Money) -> String { "\(money.minorUnits) \(money.currency)" }
}
