public import AtriumRuntime
import GRPCCore

/// Errors of the registry, each mapped to the status the caller sees. Underlying causes go to the log.
public typealias RegistryError = ServiceError<RegistryErrors>

/// The registry service's errors (see ``ServiceError``): the generic factories (`invalidArgument`, `notFound`, ...)
/// and these.
public enum RegistryErrors: ServiceErrorDomain {
    public static let service = "registry"
}

extension ServiceError where Domain == RegistryErrors {
    /// A share grant the caller made does not exist.
    static func grantNotFound(_ id: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, "share grant '\(id)' not found", file: file, line: line)
    }
    /// Storage failed; nothing was acknowledged.
    static func storageUnavailable(file: String = #fileID, line: Int = #line) -> Self {
        Self(.unavailable, "the registry could not store or read data; nothing was acknowledged, try again", file: file, line: line)
    }
    /// Security could not be asked to reserve storage; nothing was stored.
    static func quotaUnavailable(file: String = #fileID, line: Int = #line) -> Self {
        Self(.unavailable, "the storage quota cannot be checked right now; nothing was stored, try again", file: file, line: line)
    }
}
