/// Why a storage operation failed. Services map it to a gRPC status; the `detail` goes to the log only.
public struct StorageError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case io
        case notFound
        case digestMismatch
        case sizeMismatch
        case invalidDigest
        case rangeOutOfBounds
        case readOnly
    }

    private let code: Code
    /// What happened, with paths and errno; for logs, never for callers.
    public let detail: String
    /// Where the error was raised.
    public let file: String
    public let line: Int

    private init(_ code: Code, _ detail: String, file: String, line: Int) {
        self.code = code
        self.detail = detail
        self.file = file
        self.line = line
    }

    /// A system call failed.
    public static func io(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.io, detail, file: file, line: line) }
    /// No blob with that digest.
    public static func notFound(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.notFound, detail, file: file, line: line) }
    /// The bytes written do not hash to the digest the writer was told to expect.
    public static func digestMismatch(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.digestMismatch, detail, file: file, line: line) }
    /// The bytes written are not as many as the writer was told to expect.
    public static func sizeMismatch(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.sizeMismatch, detail, file: file, line: line) }
    /// A digest string that is not 64 lower-case hex characters.
    public static func invalidDigest(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidDigest, detail, file: file, line: line) }
    /// A read past the end of a blob.
    public static func rangeOutOfBounds(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.rangeOutOfBounds, detail, file: file, line: line) }
    /// A write to a store opened read-only.
    public static func readOnly(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.readOnly, detail, file: file, line: line) }

    public var isNotFound: Bool { code == .notFound }
    public var isDigestMismatch: Bool { code == .digestMismatch }
    public var isSizeMismatch: Bool { code == .sizeMismatch }
    public var isRangeOutOfBounds: Bool { code == .rangeOutOfBounds }
    public var isInvalidDigest: Bool { code == .invalidDigest }

    public var description: String { "\(code): \(detail) (\(file):\(line))" }
}

extension StorageError: Equatable {
    /// Errors are equal when their codes are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
