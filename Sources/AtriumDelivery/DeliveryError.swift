public import AtriumRuntime
import GRPCCore

/// Errors of delivery, each mapped to the status the caller sees. Underlying causes go to the log.
public typealias DeliveryError = ServiceError<DeliveryErrors>

/// The delivery service's errors (see ``ServiceError``): the generic factories (`invalidArgument`, `notFound`, ...)
/// and these.
public enum DeliveryErrors: ServiceErrorDomain {
    public static let service = "delivery"
}

extension ServiceError where Domain == DeliveryErrors {
    /// A print job that does not exist or that the caller may not see (the two are not distinguished).
    static func jobNotFound(_ id: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, "print job '\(id)' not found", file: file, line: line)
    }
    /// A printer that does not exist, is not active, or has no `print` role.
    static func printerNotFound(_ id: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, "printer '\(id)' not found", file: file, line: line)
    }
    /// Delivery's database could not be read or written; nothing was changed.
    static func storageUnavailable(file: String = #fileID, line: Int = #line) -> Self {
        Self(.unavailable, "delivery could not store or read data; nothing was changed, try again", file: file, line: line)
    }
}
