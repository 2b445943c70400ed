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
/// not) each go through a concrete, non-generic entry point, so the loop is specialised for them: generic code
/// across the module boundary costs a witness call per sample (tens of milliseconds for one 512×512 slice).
private func rescaled<Sample: BinaryInteger>(_ samples: [Sample], slope: Float, intercept: Float) -> [Float] {
    if Sample.self == UInt16.self { return rescaled(unsafeBitCast(samples, to: [UInt16].self), slope, intercept) }
    if Sample.self == Int16.self { return rescaled(unsafeBitCast(samples, to: [Int16].self), slope, intercept) }
    if Sample.self == UInt8.self { return rescaled(unsafeBitCast(samples, to: [UInt8].self), slope, intercept) }
    if Sample.self == Int8.self { return rescaled(unsafeBitCast(samples, to: [Int8].self), slope, intercept) }
    if Sample.self == UInt32.self { return rescaled(unsafeBitCast(samples, to: [UInt32].self), slope, intercept) }
    if Sample.self == Int32.self { return rescaled(unsafeBitCast(samples, to: [Int32].self), slope, intercept) }
    if slope == 1, intercept == 0 { return samples.map { Float($0) } }
    return samples.map { Float($0) * slope + intercept }
}

private func rescaled(_ samples: [UInt16], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }
private func rescaled(_ samples: [Int16], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }
private func rescaled(_ samples: [UInt8], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }
private func rescaled(_ samples: [Int8], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }
private func rescaled(_ samples: [UInt32], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }
private func rescaled(_ samples: [Int32], _ slope: Float, _ intercept: Float) -> [Float] { samples.withUnsafeBufferPointer { convert($0, slope: slope, intercept: intercept) } }

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
    if Sample.self == UInt16.self { return unsafeBitCast(quantizedUInt16(values, slope, intercept), to: [Sample].self) }
    if Sample.self == Int16.self { return unsafeBitCast(quantizedInt16(values, slope, intercept), to: [Sample].self) }
    if Sample.self == UInt8.self { return unsafeBitCast(quantizedUInt8(values, slope, intercept), to: [Sample].self) }
    if Sample.self == Int8.self { return unsafeBitCast(quantizedInt8(values, slope, intercept), to: [Sample].self) }
    if Sample.self == UInt32.self { return unsafeBitCast(quantizedUInt32(values, slope, intercept), to: [Sample].self) }
    if Sample.self == Int32.self { return unsafeBitCast(quantizedInt32(values, slope, intercept), to: [Sample].self) }
    return quantize(values, slope: slope, intercept: intercept)
}

private func quantizedUInt16(_ values: [Float], _ slope: Float, _ intercept: Float) -> [UInt16] { quantize(values, slope: slope, intercept: intercept) }
private func quantizedInt16(_ values: [Float], _ slope: Float, _ intercept: Float) -> [Int16] { quantize(values, slope: slope, intercept: intercept) }
private func quantizedUInt8(_ values: [Float], _ slope: Float, _ intercept: Float) -> [UInt8] { quantize(values, slope: slope, intercept: intercept) }
private func quantizedInt8(_ values: [Float], _ slope: Float, _ intercept: Float) -> [Int8] { quantize(values, slope: slope, intercept: intercept) }
private func quantizedUInt32(_ values: [Float], _ slope: Float, _ intercept: Float) -> [UInt32] { quantize(values, slope: slope, intercept: intercept) }
private func quantizedInt32(_ values: [Float], _ slope: Float, _ intercept: Float) -> [Int32] { quantize(values, slope: slope, intercept: intercept) }

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
