import AtriumAPI
import AtriumRuntime
public import GRPCCore

/// The backup service. Backup sets, verification, restore and retention arrive with the backup work, which
/// has no issue filed yet; until then every RPC answers UNIMPLEMENTED.
public struct BackupService: Sendable {
    /// A backup service.
    public init() {}

    /// Every RPC service the backup process serves.
    public var rpcServices: [any RegistrableRPCService] {
        [UnimplementedService(methods: Atrium_V1_Backup.Method.descriptors, subject: "the backup work (not yet filed as an issue)")]
    }
}
