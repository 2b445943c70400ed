public import AtriumAPI
public import GRPCCore

/// What a public method requires of its caller.
public enum MethodAccess: Sendable, Hashable {
    /// No credential: the request authenticates itself (`Account/Enroll` carries a one-time token).
    case open
    /// Any active subscriber, whatever its roles (its own account, usage and statements).
    case anySubscriber
    /// An active subscriber whose contract grants at least one of these roles.
    case anyOf(Set<Atrium_V1_Role>)

    /// `nil` when `roles` satisfy this requirement, else the refusal message, e.g. "contract lacks role 'receive'".
    public func refusal(roles: Set<Atrium_V1_Role>) -> String? {
        guard case .anyOf(let needed) = self, needed.isDisjoint(with: roles) else { return nil }
        let names = needed.map(\.name).sorted()
        if names.count == 1 { return "contract lacks role '\(names[0])'" }
        return "contract lacks any of the roles \(names.map { "'\($0)'" }.joined(separator: ", "))"
    }
}

/// The one table of which role each public RPC needs (ARCHITECTURE.md §3). Security decides with it and the
/// gateway's tests check it against every public method the protos define: a method missing here is refused
/// to everyone.
public enum MethodPolicy {
    /// The requirement of a fully qualified method (`atrium.v1.Registry/Register`), or `nil` when unmapped.
    public static func access(for method: String) -> MethodAccess? { table[method] }

    /// The requirement of `method`, or `nil` when unmapped.
    public static func access(for method: MethodDescriptor) -> MethodAccess? { table[method.fullyQualifiedMethod] }

    /// Every mapped method.
    public static var methods: Set<String> { Set(table.keys) }

    private static let table: [String: MethodAccess] = {
        var table: [String: MethodAccess] = [:]
        func map(_ service: String, _ access: MethodAccess, _ names: [String]) {
            for name in names { table["atrium.v1.\(service)/\(name)"] = access }
        }
        let admin = MethodAccess.anyOf([.admin])
        map(
            "SecurityAdmin", admin,
            [
                "CreateSubscriber", "GetSubscriber", "ListSubscribers", "UpdateSubscriber", "SetContract", "SuspendSubscriber",
                "ResumeSubscriber", "TerminateSubscriber", "CreateApiKey", "ListApiKeys", "RevokeApiKey", "CreateEnrollmentToken",
                "RevokeCertificate", "GetSubscriberUsage", "GetSubscriberStatement", "QueryAuditLog", "VerifyAuditLog",
            ]
        )
        map("Account", .open, ["Enroll"])
        map("Account", .anySubscriber, ["WhoAmI", "GetUsage", "GetStatement", "Quote", "ListNotifications", "ListAccesses"])

        map("Registry", .anyOf([.register]), ["Register", "AuthorizeUpload", "SetAcquisitionConditions", "GrantShare", "RevokeShare", "ListShares"])
        map("Registry", .anyOf([.register, .receive, .print]), ["GetImage", "GetThumbnail"])
        map("Registry", .anyOf([.register, .receive]), ["ListImages", "ListStudies", "ListSeries"])

        map("Delivery", .anyOf([.receive, .print]), ["Fetch", "AuthorizeFetch", "GetPrintJob"])
        map("Delivery", .anyOf([.receive]), ["GetAcquisitionConditions", "SubmitPrintJob", "WatchInbox", "ListInbox", "AckInbox"])
        map("Delivery", .anyOf([.print]), ["WatchPrintJobs", "CompletePrintJob"])

        map("Processing", .anyOf([.process]), ["Run", "Submit", "GetJob", "GetJobResult", "Cancel", "ListJobs"])

        map("Catalog", .anyOf([.publish]), ["Publish", "Withdraw", "RegisterSigningKey", "ListSigningKeys", "Assign", "Unassign"])
        map("Catalog", .anyOf([.publish, .execute]), ["GetRelease", "ListReleases", "ListAssignments"])
        map("Catalog", .anyOf([.execute]), ["GetAssignment", "Download", "Execute", "ReportInstall"])

        map(
            "Backup", admin,
            [
                "RunBackup", "ListBackups", "GetBackup", "VerifyBackup", "RestoreBackup", "GetRetentionPolicy",
                "SetRetentionPolicy", "GetSchedule", "SetSchedule",
            ]
        )
        return table
    }()
}

extension Atrium_V1_SubscriberKind {
    /// The roles a new contract of this kind gets when the operator names none.
    public var defaultRoles: [Atrium_V1_Role] {
        switch self {
        case .hospital: [.register, .receive, .process, .execute]
        case .individual: [.receive]
        case .vendor: [.publish]
        case .printer: [.print]
        case .operator: [.register, .receive, .process, .execute, .publish, .print, .admin]
        case .unspecified, .UNRECOGNIZED: []
        }
    }
}
