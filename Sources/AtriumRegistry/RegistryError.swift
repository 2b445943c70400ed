public import GRPCCore

/// Errors of the registry, each mapped to the status the caller sees. Underlying causes go to the log.
public struct RegistryError: Error, Sendable, Equatable, RPCErrorConvertible {
    private enum Code: Sendable, Equatable {
        case invalidArgument
        case notFound
        case alreadyExists
        case permissionDenied
        case failedPrecondition
        case unavailable
        case dataLoss
    }

    private let code: Code
    private let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A malformed request or upload; the message says what is wrong.
    static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    /// The image does not exist or the caller may not see it (the two are not distinguished).
    static func imageNotFound(_ id: String) -> Self { Self(.notFound, "image '\(id)' not found") }
    /// The registrant holds this SOP instance with other bytes.
    static func alreadyExists(_ message: String) -> Self { Self(.alreadyExists, message) }
    /// The caller may see the resource but not change it.
    static func permissionDenied(_ message: String) -> Self { Self(.permissionDenied, message) }
    /// The request cannot be served by this deployment as it is configured.
    static func failedPrecondition(_ message: String) -> Self { Self(.failedPrecondition, message) }
    /// A share grant the caller made does not exist.
    static func grantNotFound(_ id: String) -> Self { Self(.notFound, "share grant '\(id)' not found") }
    /// A subscriber named in a request does not exist.
    static func subscriberNotFound(_ id: String) -> Self { Self(.notFound, "subscriber '\(id)' not found") }
    /// Storage failed; nothing was acknowledged.
    static let storageUnavailable = Self(.unavailable, "the registry could not store or read data; nothing was acknowledged, try again")
    /// Security could not be asked to reserve storage; nothing was stored.
    static let quotaUnavailable = Self(.unavailable, "the storage quota cannot be checked right now; nothing was stored, try again")
    /// A stored blob is missing or does not match its record.
    static func blobDamaged(_ id: String) -> Self { Self(.dataLoss, "the stored bytes of image '\(id)' are damaged") }

    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .alreadyExists: .alreadyExists
        case .permissionDenied: .permissionDenied
        case .failedPrecondition: .failedPrecondition
        case .unavailable: .unavailable
        case .dataLoss: .dataLoss
        }
    }

    public var rpcErrorMessage: String { message }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.message == rhs.message }
}
