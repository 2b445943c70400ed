internal import Foundation

// The filters of ARCHITECTURE.md §6. All arithmetic is Float32 with boundary mode nearest (edge replicate);
// each matches the scipy.ndimage function named in its comment to within Float32 rounding.
// Hot loops run over contiguous rows through raw pointers so the compiler vectorises them.

extension Image2D {
    /// Separable Gaussian smoothing (scipy.ndimage.gaussian_filter, mode='nearest', truncate=4.0):
    /// radius `Int(4·sigma + 0.5)`, weights normalised to sum 1. Throws `invalidSigma` for a negative or non-finite sigma.
    public func smooth(sigma: Float) throws(ImagingError) -> Image2D {
        let weights = try gaussianWeights(sigma: sigma)
        let rows = self.rows
        let columns = self.columns
        let radius = weights.count / 2
        // Eight columns at a time, the accumulator in registers across every tap: each tap costs two loads, not
        // a load and a store of a row in memory. The sums run in the same order as the scalar tail's.
        let whole = columns & ~7
        var row = [Float](repeating: 0, count: columns + 2 * radius)
        var neighbours = [UnsafePointer<Float>](repeating: UnsafePointer(bitPattern: 8)!, count: 2 * (radius + 1))
        let output = [Float](unsafeUninitializedCapacity: pixels.count) { destination, initialized in
            pixels.withUnsafeBufferPointer { source in
                row.withUnsafeMutableBufferPointer { padded in
                    neighbours.withUnsafeMutableBufferPointer { rowsAround in
                        weights.withUnsafeBufferPointer { weights in
                            let src = source.baseAddress!
                            let w = weights.baseAddress! + radius  // w[k] for k in -radius...radius
                            let w0 = w[0]
                            let middle = padded.baseAddress! + radius
                            let above = rowsAround.baseAddress!
                            let below = above + (radius + 1)
                            for r in 0..<rows {
                                // Vertical pass into the middle of the padded row.
                                let center = src + r * columns
                                for k in 0...radius {
                                    above[k] = src + max(r - k, 0) * columns
                                    below[k] = src + min(r + k, rows - 1) * columns
                                }
                                var c = 0
                                while c < whole {
                                    var sum = w0 * load8(center + c)
                                    var k = 1
                                    while k <= radius {
                                        sum += w[k] * (load8(above[k] + c) + load8(below[k] + c))
                                        k += 1
                                    }
                                    store8(sum, middle + c)
                                    c += 8
                                }
                                while c < columns {
                                    var sum = w0 * center[c]
                                    var k = 1
                                    while k <= radius {
                                        sum += w[k] * (above[k][c] + below[k][c])
                                        k += 1
                                    }
                                    middle[c] = sum
                                    c += 1
                                }
                                // Edge replicate, then the horizontal pass straight into the output row.
                                let first = middle[0]
                                let last = middle[columns - 1]
                                for i in 0..<radius {
                                    padded[i] = first
                                    middle[columns + i] = last
                                }
                                let out = destination.baseAddress! + r * columns
                                c = 0
                                while c < whole {
                                    var sum = w0 * load8(middle + c)
                                    var k = 1
                                    while k <= radius {
                                        sum += w[k] * (load8(middle + c - k) + load8(middle + c + k))
                                        k += 1
                                    }
                                    store8(sum, out + c)
                                    c += 8
                                }
                                while c < columns {
                                    var sum = w0 * middle[c]
                                    var k = 1
                                    while k <= radius {
                                        sum += w[k] * (middle[c - k] + middle[c + k])
                                        k += 1
                                    }
                                    out[c] = sum
                                    c += 1
                                }
                            }
                        }
                    }
                }
            }
            initialized = pixels.count
        }
        return Image2D(unchecked: rows, columns, output)
    }

    /// Sobel gradient magnitude `sqrt(Sx² + Sy²)` (hypot of scipy.ndimage.sobel along axes 1 and 0).
    public func derivative() -> Image2D {
        sobel { sx, sy in (sx * sx + sy * sy).squareRoot() }
    }

    /// One signed Sobel component, as scipy.ndimage.sobel(axis:): axis 0 differentiates down the rows
    /// (smoothing [1, 2, 1] along columns), axis 1 along the columns (smoothing along rows). Throws `invalidAxis` otherwise.
    public func derivative(axis: Int) throws(ImagingError) -> Image2D {
        switch axis {
        case 0: sobel { _, sy in sy }
        case 1: sobel { sx, _ in sx }
        default: throw .invalidAxis("derivative axis \(axis) of a 2-D image")
        }
    }

    /// The 5-point Laplacian `f(r-1,c) + f(r+1,c) + f(r,c-1) + f(r,c+1) − 4f(r,c)` (scipy.ndimage.laplace).
    public func laplacian() -> Image2D {
        let columns = self.columns
        let stride = columns + 2
        let padded = paddedByOne()
        var output = [Float](repeating: 0, count: pixels.count)
        padded.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                for r in 0..<rows {
                    let m = source.baseAddress! + (r + 1) * stride + 1
                    let u = m - stride
                    let d = m + stride
                    let out = destination.baseAddress! + r * columns
                    for c in 0..<columns {
                        out[c] = (u[c] + d[c] - 2 * m[c]) + (m[c - 1] + m[c + 1] - 2 * m[c])
                    }
                }
            }
        }
        return Image2D(unchecked: rows, columns, output)
    }

    /// The largest absolute response of the four 3×3 line masks: horizontal `[-1 -1 -1; 2 2 2; -1 -1 -1]`,
    /// vertical (its transpose), +45° `[-1 -1 2; -1 2 -1; 2 -1 -1]` and −45° (its mirror), each as
    /// scipy.ndimage.convolve(mode='nearest') computes it. Each mask is 3·(its line) − (the 3×3 box), so one box sum serves all four.
    public func lines() -> Image2D {
        let columns = self.columns
        let stride = columns + 2
        let padded = paddedByOne()
        var output = [Float](repeating: 0, count: pixels.count)
        var columnSums = [Float](repeating: 0, count: stride)
        padded.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                columnSums.withUnsafeMutableBufferPointer { sums in
                    let s = sums.baseAddress! + 1
                    for r in 0..<rows {
                        let m = source.baseAddress! + (r + 1) * stride + 1
                        let u = m - stride
                        let d = m + stride
                        for c in -1...columns { s[c] = u[c] + m[c] + d[c] }
                        let out = destination.baseAddress! + r * columns
                        for c in 0..<columns {
                            let box = s[c - 1] + s[c] + s[c + 1]
                            let horizontal = abs(3 * (m[c - 1] + m[c] + m[c + 1]) - box)
                            let vertical = abs(3 * s[c] - box)
                            let rising = abs(3 * (u[c + 1] + m[c] + d[c - 1]) - box)
                            let falling = abs(3 * (u[c - 1] + m[c] + d[c + 1]) - box)
                            let a = horizontal > vertical ? horizontal : vertical
                            let b = rising > falling ? rising : falling
                            out[c] = a > b ? a : b
                        }
                    }
                }
            }
        }
        return Image2D(unchecked: rows, columns, output)
    }

    /// Difference of Gaussians `smooth(sigmaLow) − smooth(sigmaHigh)`. Throws `invalidBand` unless `sigmaLow < sigmaHigh`.
    public func bandpass(sigmaLow: Float, sigmaHigh: Float) throws(ImagingError) -> Image2D {
        guard sigmaLow < sigmaHigh else { throw .invalidBand("sigma low \(sigmaLow) is not below sigma high \(sigmaHigh)") }
        return try Image2D.subtract(smooth(sigma: sigmaLow), smooth(sigma: sigmaHigh))
    }

    /// Pixelwise `a + b`. Throws `shapeMismatch` unless the shapes are equal.
    public static func add(_ a: Image2D, _ b: Image2D) throws(ImagingError) -> Image2D {
        try combine(a, b, +)
    }

    /// Pixelwise `a − b` (e.g. mask subtraction). Throws `shapeMismatch` unless the shapes are equal.
    public static func subtract(_ a: Image2D, _ b: Image2D) throws(ImagingError) -> Image2D {
        try combine(a, b, -)
    }

    @inline(__always)
    private static func combine(_ a: Image2D, _ b: Image2D, _ operation: (Float, Float) -> Float) throws(ImagingError) -> Image2D {
        guard a.rows == b.rows, a.columns == b.columns else {
            throw .shapeMismatch("\(a.rows)×\(a.columns) and \(b.rows)×\(b.columns)")
        }
        var output = [Float](repeating: 0, count: a.pixels.count)
        a.pixels.withUnsafeBufferPointer { x in
            b.pixels.withUnsafeBufferPointer { y in
                output.withUnsafeMutableBufferPointer { z in
                    for i in 0..<z.count { z[i] = operation(x[i], y[i]) }
                }
            }
        }
        return Image2D(unchecked: a.rows, a.columns, output)
    }

    /// Sobel components for every pixel, combined by `combine(sx, sy)`: sx differentiates along columns, sy along rows.
    @inline(__always)
    private func sobel(_ combine: (Float, Float) -> Float) -> Image2D {
        let columns = self.columns
        let stride = columns + 2
        let padded = paddedByOne()
        var output = [Float](repeating: 0, count: pixels.count)
        var smoothedRow = [Float](repeating: 0, count: stride)
        var differenceRow = [Float](repeating: 0, count: stride)
        padded.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { destination in
                smoothedRow.withUnsafeMutableBufferPointer { smoothed in
                    differenceRow.withUnsafeMutableBufferPointer { difference in
                        let v = smoothed.baseAddress! + 1
                        let dv = difference.baseAddress! + 1
                        for r in 0..<rows {
                            let m = source.baseAddress! + (r + 1) * stride + 1
                            let u = m - stride
                            let d = m + stride
                            for c in -1...columns {
                                v[c] = u[c] + 2 * m[c] + d[c]
                                dv[c] = d[c] - u[c]
                            }
                            let out = destination.baseAddress! + r * columns
                            for c in 0..<columns {
                                let sx = v[c + 1] - v[c - 1]
                                let sy = dv[c - 1] + 2 * dv[c] + dv[c + 1]
                                out[c] = combine(sx, sy)
                            }
                        }
                    }
                }
            }
        }
        return Image2D(unchecked: rows, columns, output)
    }

    /// The image with one replicated pixel on every side: (rows + 2) × (columns + 2).
    private func paddedByOne() -> [Float] {
        let stride = columns + 2
        var padded = [Float](repeating: 0, count: (rows + 2) * stride)
        padded.withUnsafeMutableBufferPointer { destination in
            pixels.withUnsafeBufferPointer { source in
                for r in -1...rows {
                    let from = source.baseAddress! + min(max(r, 0), rows - 1) * columns
                    let to = destination.baseAddress! + (r + 1) * stride
                    to[0] = from[0]
                    (to + 1).update(from: from, count: columns)
                    to[columns + 1] = from[columns - 1]
                }
            }
        }
        return padded
    }
}

/// Gaussian weights for `sigma`, as scipy's `_gaussian_kernel1d`: computed in Double, normalised to sum 1.
func gaussianWeights(sigma: Float) throws(ImagingError) -> [Float] {
    guard sigma.isFinite, sigma >= 0 else { throw .invalidSigma("sigma \(sigma)") }
    let sigma = Double(sigma)
    let radius = Int(4 * sigma + 0.5)
    if radius == 0 { return [1] }
    let weights = (-radius...radius).map { x in exp(-0.5 / (sigma * sigma) * Double(x * x)) }
    let total = weights.reduce(0, +)
    return weights.map { Float($0 / total) }
}

/// Eight floats from `pointer`, unaligned.
@inline(__always)
func load8(_ pointer: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD8<Float>.self)
}

/// Eight floats to `pointer`, unaligned.
@inline(__always)
func store8(_ value: SIMD8<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: SIMD8<Float>.self)
}
