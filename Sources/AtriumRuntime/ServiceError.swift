public import GRPCCore

/// Names the service a ``ServiceError`` comes from (`RegistryErrors`, `DeliveryErrors`, ...), so that each service
/// has an error type of its own with its own factories, in one shape.
public protocol ServiceErrorDomain: Sendable {
    /// The service's name, as logs show it.
    static var service: String { get }
}

/// An error a service throws to its caller: the status code and message the caller sees, and the place it was
/// raised for the log. Each service names its own: `typealias RegistryError = ServiceError<RegistryErrors>`, with the
/// factories of its domain in a constrained extension (`RegistryError.imageNotFound(id)`).
///
/// - The caller sees only ``code`` and ``message`` (``RPCErrorConvertible``); underlying causes go to the log.
/// - ``description`` adds the service and the file and line that raised it, for logs.
/// - Two errors are equal when their codes are, as grpc-swift's `RPCError.Code` and GRDB's `ResultCode` compare.
public struct ServiceError<Domain: ServiceErrorDomain>: Error, Sendable, RPCErrorConvertible, CustomStringConvertible, Equatable {
    /// The status the caller gets.
    public let code: RPCError.Code
    /// What the caller is told: what was wrong, without internal detail.
    public let message: String
    /// Where the error was raised.
    public let file: String
    /// The line where the error was raised.
    public let line: Int

    /// An error with `code` and `message`, raised here.
    public init(_ code: RPCError.Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var rpcErrorCode: RPCError.Code { code }
    public var rpcErrorMessage: String { message }
    public var description: String { "\(Domain.service): \(code): \(message) (\(file):\(line))" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }

    /// A malformed request; the message says which field and why.
    public static func invalidArgument(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.invalidArgument, message, file: file, line: line)
    }
    /// Something that does not exist, or that the caller may not see (the two are not distinguished).
    public static func notFound(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, message, file: file, line: line)
    }
    /// A unique thing that is already there.
    public static func alreadyExists(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.alreadyExists, message, file: file, line: line)
    }
    /// The caller may not do this.
    public static func permissionDenied(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.permissionDenied, message, file: file, line: line)
    }
    /// No valid credential.
    public static func unauthenticated(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.unauthenticated, message, file: file, line: line)
    }
    /// A valid request that the state of a resource does not allow.
    public static func failedPrecondition(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.failedPrecondition, message, file: file, line: line)
    }
    /// A quota, budget or size bound would be exceeded; the message gives the figures.
    public static func resourceExhausted(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.resourceExhausted, message, file: file, line: line)
    }
    /// Something this service needs could not be reached or used; the caller may retry.
    public static func unavailable(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.unavailable, message, file: file, line: line)
    }
    /// Stored data is damaged or missing.
    public static func dataLoss(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.dataLoss, message, file: file, line: line)
    }
    /// The work was cancelled.
    public static func cancelled(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.cancelled, message, file: file, line: line)
    }
    /// A broken invariant of this service (a defect); the message says which.
    public static func internalError(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.internalError, message, file: file, line: line)
    }

    /// An image that does not exist or that the caller may not see (the two are not distinguished).
    public static func imageNotFound(_ id: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, "image '\(id)' not found", file: file, line: line)
    }
    /// A subscriber named in a request that does not exist.
    public static func subscriberNotFound(_ id: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.notFound, "subscriber '\(id)' not found", file: file, line: line)
    }
    /// An image whose stored bytes are missing or do not match its record.
    public static func blobDamaged(_ imageID: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.dataLoss, "the stored bytes of image '\(imageID)' are damaged", file: file, line: line)
    }
}
