import AtriumAPI
import AtriumRuntime
public import GRPCCore

/// The software catalog. Publishing, assignments, downloads and execution arrive with the software
/// distribution work, which has no issue filed yet; until then every RPC answers UNIMPLEMENTED.
public struct CatalogService: Sendable {
    /// A catalog service.
    public init() {}

    /// Every RPC service the catalog process serves.
    public var rpcServices: [any RegistrableRPCService] {
        let subject = "the software-distribution work (not yet filed as an issue)"
        return [
            UnimplementedService(methods: Atrium_V1_Catalog.Method.descriptors, subject: subject),
            UnimplementedService(methods: Atrium_V1_CatalogInternal.Method.descriptors, subject: subject),
        ]
    }
}
