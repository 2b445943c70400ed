public import GRPCCore

/// Errors of delivery, each mapped to the status the caller sees. Underlying causes go to the log.
public struct DeliveryError: Error, Sendable, Equatable, RPCErrorConvertible {
    private enum Code: Sendable, Equatable {
        case invalidArgument
        case notFound
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

    /// A malformed request; the message says what is wrong.
    static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    /// A print job that does not exist or that the caller may not see (the two are not distinguished).
    static func jobNotFound(_ id: String) -> Self { Self(.notFound, "print job '\(id)' not found") }
    /// A printer that does not exist, is not active, or has no `print` role.
    static func printerNotFound(_ id: String) -> Self { Self(.notFound, "printer '\(id)' not found") }
    /// An image of a print job that the submitter may not see.
    static func imageNotFound(_ id: String) -> Self { Self(.notFound, "image '\(id)' not found") }
    /// An inbox recipient that does not exist.
    static func subscriberNotFound(_ id: String) -> Self { Self(.notFound, "subscriber '\(id)' not found") }
    /// The caller's roles do not allow this use of the method.
    static func permissionDenied(_ message: String) -> Self { Self(.permissionDenied, message) }
    /// The request is valid but the resource is not in a state that allows it (a closed print job).
    static func failedPrecondition(_ message: String) -> Self { Self(.failedPrecondition, message) }
    /// Delivery's database could not be read or written; nothing was changed.
    static let storageUnavailable = Self(.unavailable, "delivery could not store or read data; nothing was changed, try again")
    /// A service delivery depends on could not be asked.
    static func unavailable(_ message: String) -> Self { Self(.unavailable, message) }
    /// A stored blob is missing or does not match its record.
    static func dataLoss(_ imageID: String) -> Self { Self(.dataLoss, "the stored bytes of image '\(imageID)' are damaged") }

    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .invalidArgument: .invalidArgument
        case .notFound: .notFound
        case .permissionDenied: .permissionDenied
        case .failedPrecondition: .failedPrecondition
        case .unavailable: .unavailable
        case .dataLoss: .dataLoss
        }
    }

    public var rpcErrorMessage: String { message }
}
