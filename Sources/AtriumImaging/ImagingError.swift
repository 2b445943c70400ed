/// Why an imaging operation was refused. Every case is the caller's mistake, never an internal failure.
public struct ImagingError: Error, Sendable, CustomStringConvertible {
    private enum Code: Sendable {
        case invalidShape
        case shapeMismatch
        case invalidSigma
        case invalidBand
        case invalidAxis
        case seriesMismatch
        case invalidGeometry
        case invalidPartial
    }

    private let code: Code
    /// What was wrong, with the numbers involved.
    public let detail: String
    /// Where the error was raised.
    public let file: String
    /// The line where the error was raised.
    public let line: Int

    private init(_ code: Code, _ detail: String, file: String, line: Int) {
        self.code = code
        self.detail = detail
        self.file = file
        self.line = line
    }

    /// Dimensions that are zero or negative, or a pixel count that does not match them.
    public static func invalidShape(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidShape, detail, file: file, line: line) }
    /// Two operands (or slices of one volume) whose shapes differ.
    public static func shapeMismatch(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.shapeMismatch, detail, file: file, line: line) }
    /// A Gaussian sigma that is negative, NaN or infinite.
    public static func invalidSigma(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidSigma, detail, file: file, line: line) }
    /// A band-pass whose low sigma is not below its high sigma.
    public static func invalidBand(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidBand, detail, file: file, line: line) }
    /// An axis outside the array's dimensions.
    public static func invalidAxis(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidAxis, detail, file: file, line: line) }
    /// Slices of one series that differ in size, in orientation, or in whether they carry a position.
    public static func seriesMismatch(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.seriesMismatch, detail, file: file, line: line) }
    /// A slice position or orientation with the wrong number of values, a non-finite value, or parallel direction cosines.
    public static func invalidGeometry(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidGeometry, detail, file: file, line: line) }
    /// Projection state that is malformed (bad bytes) or cannot be combined with another (different kind or axis).
    public static func invalidPartial(_ detail: String, file: String = #fileID, line: Int = #line) -> Self { Self(.invalidPartial, detail, file: file, line: line) }

    /// Whether the dimensions or pixel count were invalid.
    public var isInvalidShape: Bool { code == .invalidShape }
    /// Whether two shapes differed.
    public var isShapeMismatch: Bool { code == .shapeMismatch }
    /// Whether a sigma was invalid.
    public var isInvalidSigma: Bool { code == .invalidSigma }
    /// Whether a band-pass had low ≥ high.
    public var isInvalidBand: Bool { code == .invalidBand }
    /// Whether an axis was out of range.
    public var isInvalidAxis: Bool { code == .invalidAxis }
    /// Whether the slices of a series differed.
    public var isSeriesMismatch: Bool { code == .seriesMismatch }
    /// Whether a slice's geometry was malformed.
    public var isInvalidGeometry: Bool { code == .invalidGeometry }
    /// Whether projection state was malformed or incompatible.
    public var isInvalidPartial: Bool { code == .invalidPartial }

    /// The code, the detail and the place.
    public var description: String { "\(code): \(detail) (\(file):\(line))" }
}

extension ImagingError: Equatable {
    /// Errors are equal when their codes are.
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
}
