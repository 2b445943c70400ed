import AtriumAPI
public import AtriumCore
public import GRPCCore

/// Which backend serves each public method. The gateway serves exactly these methods and nothing else:
/// the `*Internal` services are never reachable through it.
public enum PublicRoutes {
    /// Every public service with the backend that serves it.
    public static let services: [(methods: [MethodDescriptor], backend: ServiceName)] = [
        (Atrium_V1_SecurityAdmin.Method.descriptors, .security),
        (Atrium_V1_Account.Method.descriptors, .security),
        (Atrium_V1_Registry.Method.descriptors, .registry),
        (Atrium_V1_Delivery.Method.descriptors, .delivery),
        (Atrium_V1_Processing.Method.descriptors, .processing),
        (Atrium_V1_Catalog.Method.descriptors, .catalog),
        (Atrium_V1_Backup.Method.descriptors, .backup),
    ]

    /// Every public method, flattened.
    public static var methods: [(method: MethodDescriptor, backend: ServiceName)] {
        services.flatMap { entry in entry.methods.map { ($0, entry.backend) } }
    }
}
