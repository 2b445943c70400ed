import AtriumAPI
import AtriumRuntime
public import GRPCCore

/// The processing service. Filters, projections, jobs and load reports arrive with the processing issue
/// (#6); until then every RPC answers UNIMPLEMENTED, and the process serves health so that the mesh and the
/// gateway's routing can be exercised.
public struct ProcessingService: Sendable {
    /// A processing service.
    public init() {}

    /// Every RPC service the processing process serves.
    public var rpcServices: [any RegistrableRPCService] {
        let subject = "the processing issue (#6)"
        return [
            UnimplementedService(methods: Atrium_V1_Processing.Method.descriptors, subject: subject),
            UnimplementedService(methods: Atrium_V1_ProcessingInternal.Method.descriptors, subject: subject),
        ]
    }
}
