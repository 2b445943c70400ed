/// A 2-D Float32 image, row-major: pixel (r, c) is `pixels[r * columns + c]`.
public struct Image2D: Sendable, Equatable {
    /// Number of rows (height).
    public let rows: Int
    /// Number of columns (width).
    public let columns: Int
    /// The pixels, row after row; `rows * columns` of them.
    public private(set) var pixels: [Float]

    /// An image from its pixels; throws `invalidShape` unless both dimensions are positive and the count matches.
    public init(rows: Int, columns: Int, pixels: [Float]) throws(ImagingError) {
        guard rows > 0, columns > 0, pixels.count == count(rows, columns) else {
            throw .invalidShape("\(rows)×\(columns) image with \(pixels.count) pixels")
        }
        self.rows = rows
        self.columns = columns
        self.pixels = pixels
    }

    /// An image filled with one value.
    public init(rows: Int, columns: Int, repeating value: Float = 0) throws(ImagingError) {
        guard rows > 0, columns > 0, count(rows, columns) != nil else { throw .invalidShape("\(rows)×\(columns) image") }
        self.rows = rows
        self.columns = columns
        self.pixels = [Float](repeating: value, count: rows * columns)
    }

    /// Trusted construction for results whose shape is known to be right.
    init(unchecked rows: Int, _ columns: Int, _ pixels: [Float]) {
        self.rows = rows
        self.columns = columns
        self.pixels = pixels
    }

    /// An image from stored integer samples, mapped through the modality rescale: `value = sample * slope + intercept`.
    public init<Sample: BinaryInteger>(rows: Int, columns: Int, samples: [Sample], slope: Float = 1, intercept: Float = 0) throws(ImagingError) {
        guard rows > 0, columns > 0, samples.count == count(rows, columns) else {
            throw .invalidShape("\(rows)×\(columns) image with \(samples.count) samples")
        }
        self.init(unchecked: rows, columns, rescaled(samples, slope: slope, intercept: intercept))
    }

    /// The pixel at (row, column).
    public subscript(row: Int, column: Int) -> Float {
        get { pixels[row * columns + column] }
        set { pixels[row * columns + column] = newValue }
    }

    /// The pixels as integer samples of type `Sample`: first `(value − intercept) / slope`, then rounded half away
    /// from zero and clamped to the type's range (NaN becomes 0).
    public func samples<Sample: FixedWidthInteger>(as type: Sample.Type, slope: Float = 1, intercept: Float = 0) -> [Sample] {
        quantized(pixels, as: type, slope: slope, intercept: intercept)
    }
}

/// A stack of equally shaped Float32 slices: voxel (s, r, c) is `voxels[(s * rows + r) * columns + c]`.
public struct Volume: Sendable, Equatable {
    /// Number of slices (axis 0).
    public let slices: Int
    /// Number of rows in each slice (axis 1).
    public let rows: Int
    /// Number of columns in each slice (axis 2).
    public let columns: Int
    /// The voxels, slice after slice, each slice row-major.
    public private(set) var voxels: [Float]

    /// A volume from its voxels; throws `invalidShape` unless all dimensions are positive and the count matches.
    public init(slices: Int, rows: Int, columns: Int, voxels: [Float]) throws(ImagingError) {
        guard slices > 0, rows > 0, columns > 0, voxels.count == count(slices, rows, columns) else {
            throw .invalidShape("\(slices)×\(rows)×\(columns) volume with \(voxels.count) voxels")
        }
        self.slices = slices
        self.rows = rows
        self.columns = columns
        self.voxels = voxels
    }

    /// A volume stacking `images` in order; throws `invalidShape` if empty, `shapeMismatch` if their shapes differ.
    public init(stacking images: [Image2D]) throws(ImagingError) {
        guard let first = images.first else { throw .invalidShape("no slices") }
        var voxels: [Float] = []
        voxels.reserveCapacity(images.count * first.pixels.count)
        for image in images {
            guard image.rows == first.rows, image.columns == first.columns else {
                throw .shapeMismatch("slice \(image.rows)×\(image.columns) in a \(first.rows)×\(first.columns) stack")
            }
            voxels.append(contentsOf: image.pixels)
        }
        self.slices = images.count
        self.rows = first.rows
        self.columns = first.columns
        self.voxels = voxels
    }

    /// A volume from stored integer samples, mapped through the modality rescale: `value = sample * slope + intercept`.
    public init<Sample: BinaryInteger>(
        slices: Int, rows: Int, columns: Int, samples: [Sample], slope: Float = 1, intercept: Float = 0
    ) throws(ImagingError) {
        guard slices > 0, rows > 0, columns > 0, samples.count == count(slices, rows, columns) else {
            throw .invalidShape("\(slices)×\(rows)×\(columns) volume with \(samples.count) samples")
        }
        self.slices = slices
        self.rows = rows
        self.columns = columns
        self.voxels = rescaled(samples, slope: slope, intercept: intercept)
    }

    /// Slice `index` as an image.
    public func slice(_ index: Int) -> Image2D {
        let count = rows * columns
        return Image2D(unchecked: rows, columns, Array(voxels[index * count ..< (index + 1) * count]))
    }

    /// The voxels as integer samples of type `Sample`, as `Image2D.samples(as:slope:intercept:)` does.
    public func samples<Sample: FixedWidthInteger>(as type: Sample.Type, slope: Float = 1, intercept: Float = 0) -> [Sample] {
        quantized(voxels, as: type, slope: slope, intercept: intercept)
    }
}

/// The product of the dimensions, or nil if it overflows.
private func count(_ dimensions: Int...) -> Int? {
    var total = 1
    for dimension in dimensions {
        let (product, overflow) = total.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        total = product
    }
    return total
}

@inline(__always)
/// `Float(sample) * slope + intercept` for every sample. The stored pixel types (8-, 16- and 32-bit, signed or
/// not) each get a loop specialised for them: a generic `map` across the module boundary costs a witness call per
/// sample, tens of milliseconds for one 512×512 slice.
private func rescaled<Sample: BinaryInteger>(_ samples: [Sample], slope: Float, intercept: Float) -> [Float] {
    func run<T: BinaryInteger>(_: T.Type) -> [Float] {
        samples.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: T.self) { convert($0, slope: slope, intercept: intercept) }
        }
    }
    switch Sample.self {
    case is UInt16.Type: return run(UInt16.self)
    case is Int16.Type: return run(Int16.self)
    case is UInt8.Type: return run(UInt8.self)
    case is Int8.Type: return run(Int8.self)
    case is UInt32.Type: return run(UInt32.self)
    case is Int32.Type: return run(Int32.self)
    default:
        if slope == 1, intercept == 0 { return samples.map { Float($0) } }
        return samples.map { Float($0) * slope + intercept }
    }
}

@inline(__always)
private func convert<T: BinaryInteger>(_ source: UnsafeBufferPointer<T>, slope: Float, intercept: Float) -> [Float] {
    [Float](unsafeUninitializedCapacity: source.count) { output, initialized in
        if slope == 1, intercept == 0 {
            for i in 0..<source.count { output[i] = Float(source[i]) }
        } else {
            for i in 0..<source.count { output[i] = Float(source[i]) * slope + intercept }
        }
        initialized = source.count
    }
}

/// `(value − intercept) / slope` (in Double), rounded half away from zero and clamped to `Sample`'s range, with
/// NaN as 0; specialised per stored type like `rescaled`.
private func quantized<Sample: FixedWidthInteger>(_ values: [Float], as _: Sample.Type, slope: Float, intercept: Float) -> [Sample] {
    func run<T: FixedWidthInteger>(_: T.Type) -> [Sample] {
        let result: [T] = quantize(values, slope: slope, intercept: intercept)
        return unsafeBitCast(result, to: [Sample].self)
    }
    switch Sample.self {
    case is UInt16.Type: return run(UInt16.self)
    case is Int16.Type: return run(Int16.self)
    case is UInt8.Type: return run(UInt8.self)
    case is Int8.Type: return run(Int8.self)
    case is UInt32.Type: return run(UInt32.self)
    case is Int32.Type: return run(Int32.self)
    default: return quantize(values, slope: slope, intercept: intercept)
    }
}

@inline(__always)
private func quantize<T: FixedWidthInteger>(_ values: [Float], slope: Float, intercept: Float) -> [T] {
    let low = Double(T.min)
    let high = Double(T.max)
    let identity = slope == 1 && intercept == 0
    let slope = Double(slope)
    let intercept = Double(intercept)
    return [T](unsafeUninitializedCapacity: values.count) { output, initialized in
        values.withUnsafeBufferPointer { input in
            for i in 0..<input.count {
                var stored = Double(input[i])
                if !identity { stored = (stored - intercept) / slope }
                stored.round(.toNearestOrAwayFromZero)
                output[i] = stored.isNaN ? 0 : stored <= low ? T.min : stored >= high ? T.max : T(stored)
            }
        }
        initialized = values.count
    }
}
