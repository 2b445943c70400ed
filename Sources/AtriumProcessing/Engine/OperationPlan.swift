import SwiftProtobuf
import AtriumAPI
import AtriumImaging

/// A validated operation: what to compute, the operation as applied (defaults filled in), and the output type.
///
/// Every refusal is INVALID_ARGUMENT naming the field and the rule (ARCHITECTURE.md §6 defines the operations).
struct OperationPlan: Sendable {
    enum Kind: Sendable, Equatable {
        case smooth(sigma: Float)
        case derivative(Atrium_V1_DerivativeComponent)
        case laplacian
        case lines
        case bandpass(low: Float, high: Float)
        case add
        case subtract
        case projection(ProjectionAccumulator.Kind, axis: Int)
    }

    let kind: Kind
    /// The operation as applied: defaults filled in (axis SLICE, component MAGNITUDE).
    let applied: Atrium_V1_Operation
    /// Never UNSPECIFIED.
    let outputType: Atrium_V1_OutputType

    /// The largest sigma accepted, in pixels.
    static let maximumSigma = 64.0

    init(_ operation: Atrium_V1_Operation, outputType: Atrium_V1_OutputType) throws(EngineError) {
        var applied = operation
        switch operation.kind {
        case .smooth(let smooth):
            try Self.check(sigma: smooth.sigma, field: "operation.smooth.sigma")
            kind = .smooth(sigma: Float(smooth.sigma))
        case .derivative(let derivative):
            switch derivative.component {
            case .unspecified, .magnitude:
                applied.derivative.component = .magnitude
                kind = .derivative(.magnitude)
            case .rows, .columns:
                kind = .derivative(derivative.component)
            case .UNRECOGNIZED(let value):
                throw EngineError.invalidInput("operation.derivative.component \(value) is not a known component")
            }
        case .laplacian:
            kind = .laplacian
        case .lines:
            kind = .lines
        case .bandpass(let band):
            try Self.check(sigma: band.sigmaLow, field: "operation.bandpass.sigma_low")
            try Self.check(sigma: band.sigmaHigh, field: "operation.bandpass.sigma_high")
            guard band.sigmaLow < band.sigmaHigh else {
                throw EngineError.invalidInput("operation.bandpass needs sigma_low < sigma_high; got sigma_low \(band.sigmaLow) and sigma_high \(band.sigmaHigh)"
                )
            }
            kind = .bandpass(low: Float(band.sigmaLow), high: Float(band.sigmaHigh))
        case .add:
            kind = .add
        case .subtract:
            kind = .subtract
        case .sumProjection(let projection):
            let axis = try Self.axis(projection, field: "operation.sum_projection.axis")
            applied.sumProjection.axis = Self.axisMessage(axis)
            kind = .projection(.sum, axis: axis)
        case .mip(let projection):
            let axis = try Self.axis(projection, field: "operation.mip.axis")
            applied.mip.axis = Self.axisMessage(axis)
            kind = .projection(.maximum, axis: axis)
        case .minip(let projection):
            let axis = try Self.axis(projection, field: "operation.minip.axis")
            applied.minip.axis = Self.axisMessage(axis)
            kind = .projection(.minimum, axis: axis)
        case nil:
            throw EngineError.invalidInput("operation is required: set one of smooth, derivative, laplacian, lines, bandpass, add, subtract, sum_projection, mip, minip")
        }
        switch outputType {
        case .unspecified, .float32: self.outputType = .float32
        case .source: self.outputType = .source
        case .UNRECOGNIZED(let value): throw EngineError.invalidInput("output_type \(value) is not a known output type")
        }
        self.applied = applied
    }

    private static func check(sigma: Double, field: String) throws(EngineError) {
        guard sigma.isFinite, sigma > 0, sigma <= maximumSigma else {
            throw EngineError.invalidInput("\(field) must be greater than 0 and at most \(Int(maximumSigma)) pixels; got \(sigma)")
        }
    }

    private static func axis(_ projection: Atrium_V1_Operation.Projection, field: String) throws(EngineError) -> Int {
        switch projection.axis {
        case .unspecified, .slice: 0
        case .rows: 1
        case .columns: 2
        case .UNRECOGNIZED(let value): throw EngineError.invalidInput("\(field) \(value) is not a known axis")
        }
    }

    private static func axisMessage(_ axis: Int) -> Atrium_V1_ProjectionAxis {
        [.slice, .rows, .columns][axis]
    }

    /// Whether each input gives its own result (filters); otherwise the inputs combine into one result.
    var isSliceWise: Bool {
        switch kind {
        case .smooth, .derivative, .laplacian, .lines, .bandpass: true
        case .add, .subtract, .projection: false
        }
    }

    /// The operation's name as the API spells it, e.g. `sum_projection`.
    var name: String {
        switch kind {
        case .smooth: "smooth"
        case .derivative: "derivative"
        case .laplacian: "laplacian"
        case .lines: "lines"
        case .bandpass: "bandpass"
        case .add: "add"
        case .subtract: "subtract"
        case .projection(.sum, _): "sum_projection"
        case .projection(.maximum, _): "mip"
        case .projection(.minimum, _): "minip"
        }
    }

    /// The operation with its applied parameters, e.g. `smooth(sigma=1.5)`: the result's Derivation Description.
    var summary: String {
        switch kind {
        case .smooth(let sigma): "smooth(sigma=\(sigma))"
        case .derivative(let component):
            switch component {
            case .rows: "derivative(axis=rows)"
            case .columns: "derivative(axis=columns)"
            default: "derivative(magnitude)"
            }
        case .laplacian: "laplacian"
        case .lines: "lines"
        case .bandpass(let low, let high): "bandpass(sigma_low=\(low), sigma_high=\(high))"
        case .add: "add(A, B)"
        case .subtract: "subtract(A, B)"
        case .projection(_, let axis): "\(name)(axis=\(["slice", "rows", "columns"][axis]))"
        }
    }

    /// INVALID_ARGUMENT unless `count` inputs suit the operation.
    func checkInputCount(_ count: Int) throws(EngineError) {
        switch kind {
        case .add, .subtract:
            guard count == 2 else {
                throw EngineError.invalidInput("\(name) takes exactly two inputs (A, then B); got \(count)")
            }
        default:
            guard count >= 1 else { throw EngineError.invalidInput("\(name) needs at least one input") }
        }
    }

    /// Applies a slice-wise filter to one 2-D image.
    func filter(_ image: Image2D) throws(ImagingError) -> Image2D {
        switch kind {
        case .smooth(let sigma): try image.smooth(sigma: sigma)
        case .derivative(.rows): try image.derivative(axis: 0)
        case .derivative(.columns): try image.derivative(axis: 1)
        case .derivative: image.derivative()
        case .laplacian: image.laplacian()
        case .lines: image.lines()
        case .bandpass(let low, let high): try image.bandpass(sigmaLow: low, sigmaHigh: high)
        case .add, .subtract, .projection: image
        }
    }
}
