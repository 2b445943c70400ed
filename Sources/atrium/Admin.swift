import SwiftProtobuf
import ArgumentParser
import AtriumAPI
import AtriumClient
import AtriumCore
import AtriumRuntime
import Foundation
import GRPCCore

/// Output of the online verbs: readable text by default, the canonical proto3 JSON mapping with `--json`
/// (lowerCamelCase field names, as every proto3 JSON parser expects).
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print the response as JSON (the canonical proto3 JSON mapping).")
    var json = false

    func print(_ message: some SwiftProtobuf.Message, _ text: () -> String) throws {
        if json {
            Swift.print(try message.jsonString())
        } else {
            Swift.print(text())
        }
    }
}

/// Runs `body` with a client made from `options`, and turns a gRPC refusal into a one-line error.
func withAtrium<Result: Sendable>(_ options: ClientOptions, _ body: (AtriumClient) async throws -> Result) async throws -> Result {
    do {
        return try await AtriumClient.with(try options.configuration(), body)
    } catch let error as RPCError {
        throw CLIError("\(error.code.statusName): \(error.message)")
    }
}

/// A failure to show the user as one line, with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct Admin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operator administration through the gateway (needs the 'admin' role).",
        subcommands: [Subscribers.self, Contracts.self, Keys.self, EnrollToken.self, Certificates.self]
    )

    struct Subscribers: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create, list, show, suspend, resume and terminate subscribers.",
            subcommands: [Create.self, List.self, Show.self, Suspend.self, Resume.self, Terminate.self]
        )

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a subscriber with its first contract; prints the subscriber.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Option(help: "Display name.") var name: String
            @Option(help: "hospital, individual, vendor, printer or operator.") var kind: String
            @Option(name: .customLong("patient-id"), help: "For individuals: a linked patient ID (repeatable).") var patientIDs: [String] = []
            @Option(name: .customLong("external-id"), help: "An ID in the subscriber's own systems, unique.") var externalID = ""
            @OptionGroup var contract: ContractOptions

            func run() async throws {
                guard let kind = Atrium_V1_SubscriberKind(name: kind) else { throw ValidationError("unknown kind '\(kind)'") }
                let terms = try contract.apply(to: .with { $0.storageQuotaBytes = 1 << 40 })
                let subscriber = try await withAtrium(client) { atrium in
                    try await atrium.admin.createSubscriber(
                        .with {
                            $0.displayName = name
                            $0.kind = kind
                            $0.patientIds = patientIDs
                            $0.externalID = externalID
                            $0.contract = terms
                        },
                        metadata: atrium.metadata
                    )
                }
                try output.print(subscriber) { Describe.subscriber(subscriber) }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List subscribers, one per line.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Option(help: "Only this kind.") var kind: String?
            @Option(help: "Only this status: active, suspended or terminated.") var status: String?

            func run() async throws {
                let kind = try kind.map { text in
                    guard let kind = Atrium_V1_SubscriberKind(name: text) else { throw ValidationError("unknown kind '\(text)'") }
                    return kind
                }
                let statuses: [String: Atrium_V1_SubscriberStatus] = ["active": .active, "suspended": .suspended, "terminated": .terminated]
                let status = try status.map { text in
                    guard let status = statuses[text] else { throw ValidationError("unknown status '\(text)'") }
                    return status
                }
                let all = try await withAtrium(client) { atrium in
                    var result = Atrium_V1_ListSubscribersResponse()
                    var token = ""
                    repeat {
                        let page = try await atrium.admin.listSubscribers(
                            .with {
                                $0.kind = kind ?? .unspecified
                                $0.status = status ?? .unspecified
                                $0.page = .with { $0.pageSize = 1000; $0.pageToken = token }
                            },
                            metadata: atrium.metadata
                        )
                        result.subscribers += page.subscribers
                        token = page.nextPageToken
                    } while !token.isEmpty
                    return result
                }
                try output.print(all) {
                    all.subscribers.map { "\($0.subscriberID)  \($0.kind.name)  \(Describe.status($0.status))  \($0.displayName)" }.joined(separator: "\n")
                }
            }
        }

        struct Show: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Show one subscriber and its contract.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String

            func run() async throws {
                let subscriber = try await withAtrium(client) { atrium in
                    try await atrium.admin.getSubscriber(.with { $0.subscriberID = id }, metadata: atrium.metadata)
                }
                try output.print(subscriber) { Describe.subscriber(subscriber) }
            }
        }

        struct Suspend: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Suspend a subscriber: its calls are refused until it is resumed.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @Option(help: "Why, for the audit log.") var reason = ""

            func run() async throws {
                let subscriber = try await withAtrium(client) { atrium in
                    try await atrium.admin.suspendSubscriber(.with { $0.subscriberID = id; $0.reason = reason }, metadata: atrium.metadata)
                }
                try output.print(subscriber) { Describe.subscriber(subscriber) }
            }
        }

        struct Resume: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Resume a suspended subscriber.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String

            func run() async throws {
                let subscriber = try await withAtrium(client) { atrium in
                    try await atrium.admin.resumeSubscriber(.with { $0.subscriberID = id }, metadata: atrium.metadata)
                }
                try output.print(subscriber) { Describe.subscriber(subscriber) }
            }
        }

        struct Terminate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Terminate a contract: every key and certificate is revoked at once; stored images are kept, visible only to operators."
            )
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @Option(help: "Why, for the audit log.") var reason = ""

            func run() async throws {
                let subscriber = try await withAtrium(client) { atrium in
                    try await atrium.admin.terminateSubscriber(.with { $0.subscriberID = id; $0.reason = reason }, metadata: atrium.metadata)
                }
                try output.print(subscriber) { Describe.subscriber(subscriber) }
            }
        }
    }

    struct Contracts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a subscriber's contract.", subcommands: [Set.self])

        struct Set: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Put a new contract version in force: the current terms with the options given changed."
            )
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @OptionGroup var contract: ContractOptions

            func run() async throws {
                let result = try await withAtrium(client) { atrium in
                    let current = try await atrium.admin.getSubscriber(.with { $0.subscriberID = id }, metadata: atrium.metadata).contract
                    let terms = try contract.apply(to: current)
                    return try await atrium.admin.setContract(.with { $0.subscriberID = id; $0.contract = terms }, metadata: atrium.metadata)
                }
                try output.print(result) { Describe.contract(result) }
            }
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "API keys.", subcommands: [Create.self, List.self, Revoke.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Make an API key; the whole key is printed once and never stored.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @Option(help: "A label, e.g. 'PACS bridge'.") var label = ""
            @Option(help: "Days until the key expires (default: never).") var expiresInDays: Int?

            func run() async throws {
                let response = try await withAtrium(client) { atrium in
                    try await atrium.admin.createApiKey(
                        .with {
                            $0.subscriberID = id
                            $0.label = label
                            if let days = expiresInDays { $0.expiresAt = .init(date: Date().addingTimeInterval(Double(days) * 86_400)) }
                        },
                        metadata: atrium.metadata
                    )
                }
                try output.print(response) { "key \(response.key.prefix) for \(response.key.subscriberID)\nATRIUM_API_KEY=\(response.secret)" }
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "List a subscriber's keys by prefix (never the secrets).")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @Flag(help: "Include revoked keys.") var includeRevoked = false

            func run() async throws {
                let response = try await withAtrium(client) { atrium in
                    try await atrium.admin.listApiKeys(.with { $0.subscriberID = id; $0.includeRevoked = includeRevoked }, metadata: atrium.metadata)
                }
                try output.print(response) {
                    response.keys.map { key in
                        let state = key.hasRevokedAt ? "revoked \(Describe.time(key.revokedAt))" : key.hasExpiresAt ? "expires \(Describe.time(key.expiresAt))" : "active"
                        return "atr_\(key.prefix)_…  \(state)  \(key.label)"
                    }.joined(separator: "\n")
                }
            }
        }

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke a key; the gateway refuses it within its cache TTL (5 s).")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The key's prefix (the 12 characters after 'atr_').") var prefix: String

            func run() async throws {
                let key = try await withAtrium(client) { atrium in
                    try await atrium.admin.revokeApiKey(.with { $0.prefix = prefix }, metadata: atrium.metadata)
                }
                try output.print(key) { "revoked atr_\(key.prefix)_… of \(key.subscriberID)" }
            }
        }
    }

    struct EnrollToken: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "enroll-token", abstract: "One-time enrolment tokens.", subcommands: [Create.self])

        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Make a one-time token for `atrium enroll`; printed once.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The subscriber ID.") var id: String
            @Option(help: "Hours the token stays valid (default 24, at most 720).") var validForHours: UInt32 = 24

            func run() async throws {
                let token = try await withAtrium(client) { atrium in
                    try await atrium.admin.createEnrollmentToken(
                        .with { $0.subscriberID = id; $0.validForSeconds = validForHours * 3600 },
                        metadata: atrium.metadata
                    )
                }
                try output.print(token) { "token for \(token.subscriberID), valid until \(Describe.time(token.expiresAt)):\n\(token.token)" }
            }
        }
    }

    struct Certificates: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enrolled client certificates.", subcommands: [Revoke.self])

        struct Revoke: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Revoke one certificate by its hex serial.")
            @OptionGroup var client: ClientOptions
            @OptionGroup var output: OutputOptions
            @Argument(help: "The serial number, hex.") var serial: String

            func run() async throws {
                let certificate = try await withAtrium(client) { atrium in
                    try await atrium.admin.revokeCertificate(.with { $0.serial = serial }, metadata: atrium.metadata)
                }
                try output.print(certificate) { "revoked certificate \(certificate.serial) of \(certificate.subscriberID)" }
            }
        }
    }
}

/// The contract terms the CLI can set; each option left out keeps the current value.
struct ContractOptions: ParsableArguments {
    @Option(help: "Comma-separated roles: register, receive, process, execute, publish, print, admin (default: the kind's).") var roles: String?
    @Option(help: "Storage quota in bytes (create: default 1 TiB).") var storageQuotaBytes: UInt64?
    @Option(help: "Warning threshold, percent of the quota (default 80).") var storageWarningPercent: UInt32?
    @Option(help: "Sustained requests per second (0: unlimited).") var requestsPerSecond: Double?
    @Option(help: "Requests allowed in a burst.") var requestBurst: UInt32?
    @Option(help: "Sustained bytes per second streamed (0: unlimited).") var bytesPerSecond: UInt64?
    @Option(help: "Bytes allowed in a burst.") var byteBurst: UInt64?
    @Option(help: "Largest message accepted, bytes (0: the gateway's default).") var maxMessageBytes: UInt32?
    @Option(help: "ISO 4217 currency of every fee, e.g. EUR.") var currency: String?
    @Option(help: "Subscription fee per month, minor units.") var subscriptionFee: Int64?
    @Option(help: "Management fee per month, minor units.") var managementFee: Int64?
    @Option(help: "Storage fee per GB-month, minor units.") var storageFeePerGbMonth: Int64?
    @Option(help: "Fee per delivered image, minor units.") var deliveryFee: Int64?
    @Option(help: "Fee per processed image, minor units.") var processingFeePerImage: Int64?
    @Option(help: "Fee per processing CPU-second, minor units.") var processingFeePerCpuSecond: Int64?
    @Option(help: "Fee per GB of processing input, minor units.") var processingFeePerGb: Int64?
    @Option(help: "Budget cap per month, minor units (-1 removes it).") var budgetCap: Int64?

    func apply(to current: Atrium_V1_Contract) throws -> Atrium_V1_Contract {
        var contract = current
        if let roles {
            contract.roles = try roles.split(separator: ",").map { name in
                guard let role = Atrium_V1_Role(name: String(name)) else { throw ValidationError("unknown role '\(name)'") }
                return role
            }
        }
        if let storageQuotaBytes { contract.storageQuotaBytes = storageQuotaBytes }
        if let storageWarningPercent { contract.storageWarningPercent = storageWarningPercent }
        if let requestsPerSecond { contract.requestsPerSecond = requestsPerSecond }
        if let requestBurst { contract.requestBurst = requestBurst }
        if let bytesPerSecond { contract.bytesPerSecond = bytesPerSecond }
        if let byteBurst { contract.byteBurst = byteBurst }
        if let maxMessageBytes { contract.maxMessageBytes = maxMessageBytes }
        if let currency { contract.fees.currency = currency }
        if let subscriptionFee { contract.fees.subscriptionFeeMinor = subscriptionFee }
        if let managementFee { contract.fees.managementFeeMinor = managementFee }
        if let storageFeePerGbMonth { contract.fees.storageFeePerGbMonthMinor = storageFeePerGbMonth }
        if let deliveryFee { contract.fees.deliveryFeePerImageMinor = deliveryFee }
        if let processingFeePerImage { contract.fees.processingFeePerImageMinor = processingFeePerImage }
        if let processingFeePerCpuSecond { contract.fees.processingFeePerCpuSecondMinor = processingFeePerCpuSecond }
        if let processingFeePerGb { contract.fees.processingFeePerGbMinor = processingFeePerGb }
        if let budgetCap {
            if budgetCap < 0 {
                contract.clearBudgetCapPerPeriod()
            } else {
                contract.budgetCapPerPeriod = .with { $0.currency = contract.fees.currency; $0.minorUnits = budgetCap }
            }
        }
        return contract
    }
}

/// Readable text for the CLI.
enum Describe {
    static func time(_ timestamp: Google_Protobuf_Timestamp) -> String {
        ISO8601DateFormatter().string(from: timestamp.date)
    }

    static func status(_ status: Atrium_V1_SubscriberStatus) -> String {
        switch status {
        case .active: "active"
        case .suspended: "suspended"
        case .terminated: "terminated"
        default: "unknown"
        }
    }

    static func subscriber(_ subscriber: Atrium_V1_Subscriber) -> String {
        var lines = ["\(subscriber.subscriberID)  \(subscriber.displayName)", "  kind: \(subscriber.kind.name), status: \(status(subscriber.status))"]
        if !subscriber.patientIds.isEmpty { lines.append("  patients: \(subscriber.patientIds.joined(separator: ", "))") }
        if !subscriber.externalID.isEmpty { lines.append("  external ID: \(subscriber.externalID)") }
        lines.append(contract(subscriber.contract).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        return lines.joined(separator: "\n")
    }

    static func contract(_ contract: Atrium_V1_Contract) -> String {
        var lines = [
            "contract v\(contract.version) since \(time(contract.effectiveFrom))",
            "  roles: \(contract.roles.map(\.name).joined(separator: ", "))",
            "  storage: \(contract.storageQuotaBytes) bytes, warning at \(contract.storageWarningPercent)%",
        ]
        if contract.requestsPerSecond > 0 { lines.append("  requests: \(contract.requestsPerSecond)/s, burst \(contract.requestBurst)") }
        if contract.bytesPerSecond > 0 { lines.append("  bytes: \(contract.bytesPerSecond)/s, burst \(contract.byteBurst)") }
        let fees = contract.fees
        if !fees.currency.isEmpty {
            lines.append(
                "  fees (\(fees.currency), minor units): subscription \(fees.subscriptionFeeMinor), management \(fees.managementFeeMinor), storage/GB-month \(fees.storageFeePerGbMonthMinor), delivery/image \(fees.deliveryFeePerImageMinor), processing/image \(fees.processingFeePerImageMinor), /CPU-s \(fees.processingFeePerCpuSecondMinor), /GB \(fees.processingFeePerGbMinor)"
            )
        }
        if contract.hasBudgetCapPerPeriod { lines.append("  budget cap: \(contract.budgetCapPerPeriod.minorUnits) per month") }
        return lines.joined(separator: "\n")
    }
}
