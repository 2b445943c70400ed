public import GRPCCore

/// Errors of the security service, each mapped to the status the caller sees.
public struct SecurityError: Error, Sendable, Equatable, RPCErrorConvertible {
    public let rpcErrorCode: RPCError.Code
    public let rpcErrorMessage: String

    private init(_ code: RPCError.Code, _ message: String) {
        self.rpcErrorCode = code
        self.rpcErrorMessage = message
    }

    /// A malformed request; the message says which field and why.
    static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    /// An unknown subscriber, key, certificate or reservation (or one the caller may not see).
    static func notFound(_ message: String) -> Self { Self(.notFound, message) }
    /// A unique value that is taken, e.g. an external ID.
    static func alreadyExists(_ message: String) -> Self { Self(.alreadyExists, message) }
    /// The request is valid but the state does not allow it, e.g. resuming a terminated subscriber.
    static func failedPrecondition(_ message: String) -> Self { Self(.failedPrecondition, message) }
    /// A quota or budget would be exceeded; the message gives the figures.
    static func resourceExhausted(_ message: String) -> Self { Self(.resourceExhausted, message) }
    /// A credential that is missing, unknown, used up or expired.
    static func unauthenticated(_ message: String) -> Self { Self(.unauthenticated, message) }
    /// The caller lacks the role.
    static func permissionDenied(_ message: String) -> Self { Self(.permissionDenied, message) }
    /// The database could not be read or written; the detail went to the log.
    static let storageUnavailable = Self(.unavailable, "the security database is unavailable; try again")
}
