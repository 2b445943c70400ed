public import GRPCCore

/// Errors of the security service, each mapped to the status the caller sees.
public struct SecurityError: Error, Sendable, Equatable, RPCErrorConvertible {
    private enum Code: Sendable, Equatable {
        case unimplemented
        case invalidArgument
        case unavailable
    }

    private let code: Code
    private let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// An RPC that a later issue delivers.
    static func unimplemented(_ subject: String) -> Self { Self(.unimplemented, subject) }
    /// A malformed request; the message says which field and why.
    static func invalidArgument(_ message: String) -> Self { Self(.invalidArgument, message) }
    /// The database could not be read or written; the detail went to the log.
    static let storageUnavailable = Self(.unavailable, "the security database is unavailable; try again")

    public var rpcErrorCode: RPCError.Code {
        switch code {
        case .unimplemented: .unimplemented
        case .invalidArgument: .invalidArgument
        case .unavailable: .unavailable
        }
    }

    public var rpcErrorMessage: String { message }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
