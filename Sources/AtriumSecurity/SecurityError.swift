public import AtriumRuntime
import GRPCCore

/// Errors of security, each mapped to the status the caller sees. Underlying causes go to the log.
public typealias SecurityError = ServiceError<SecurityErrors>

/// The security service's errors (see ``ServiceError``): the generic factories (`invalidArgument`, `notFound`, ...)
/// and these.
public enum SecurityErrors: ServiceErrorDomain {
    public static let service = "security"
}

extension ServiceError where Domain == SecurityErrors {
    /// The database could not be read or written; the detail went to the log.
    static func storageUnavailable(file: String = #fileID, line: Int = #line) -> Self {
        Self(.unavailable, "the security database is unavailable; try again", file: file, line: line)
    }
}
