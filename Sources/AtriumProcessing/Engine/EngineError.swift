/// Why the engine cannot make a result. The engine (this folder: operation plans, source decoding, result
/// building) knows nothing of gRPC; the service maps these to statuses at its edge (``ProcessingError`` from an
/// `EngineError`, and `EngineError`'s `RPCErrorConvertible` conformance in `ProcessingError.swift`).
struct EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Kind: Sendable, Equatable {
        /// The operation or an input cannot be used; the message says which and why (INVALID_ARGUMENT).
        case invalidInput
        /// The engine failed on input it accepted (INTERNAL).
        case internalFault
    }

    /// Whose fault it is.
    let kind: Kind
    /// What the caller is told.
    let message: String
    /// Where the error was raised, for logs.
    let file: String
    let line: Int

    init(_ kind: Kind, _ message: String, file: String = #fileID, line: Int = #line) {
        self.kind = kind
        self.message = message
        self.file = file
        self.line = line
    }

    /// An unusable operation or input.
    static func invalidInput(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.invalidInput, message, file: file, line: line)
    }

    /// A failure of the engine itself.
    static func internalFault(_ message: String, file: String = #fileID, line: Int = #line) -> Self {
        Self(.internalFault, message, file: file, line: line)
    }

    var description: String { "processing engine: \(kind): \(message) (\(file):\(line))" }

    static func == (lhs: Self, rhs: Self) -> Bool { lhs.kind == rhs.kind }
}
