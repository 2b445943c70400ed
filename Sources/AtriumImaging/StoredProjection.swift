// Maximum and minimum intensity projections along the slice axis of stored 16-bit samples, without converting the
// stack to Float32 first: half the memory to stream, which is what bounds a projection.

/// MIP and MinIP along the slice axis (axis 0) of a stack of stored 16-bit slices, mapped through the modality
/// rescale once at the end.
///
/// The rescale `Float(sample) · slope + intercept` is monotone in the sample (non-decreasing for a positive slope,
/// non-increasing for a negative one, and Float32 rounding keeps that), so the projection of the rescaled values
/// equals the rescale of the stored values' projection (a negative slope swaps maximum and minimum): the result is
/// identical to `Volume(slices:rows:columns:samples:slope:intercept:).mip()` / `.minip()`, bit for bit.
public enum StoredProjection {
    /// The maximum intensity projection of `slices` (each `rows × columns` samples).
    public static func mip(_ slices: [[UInt16]], rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        let folded = try fold(slices, rows: rows, columns: columns, maximum: slope >= 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float($0) }
    }

    /// The minimum intensity projection of `slices`.
    public static func minip(_ slices: [[UInt16]], rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        let folded = try fold(slices, rows: rows, columns: columns, maximum: slope < 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float($0) }
    }

    /// The maximum intensity projection of a contiguous stack of `slices` slices of `rows × columns` samples each (slice
    /// after slice), as numpy holds one.
    public static func mip(stack: [UInt16], slices: Int, rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        let folded = try fold(stack: stack, slices: slices, rows: rows, columns: columns, maximum: slope >= 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float($0) }
    }

    /// The minimum intensity projection of a contiguous stack.
    public static func minip(stack: [UInt16], slices: Int, rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        let folded = try fold(stack: stack, slices: slices, rows: rows, columns: columns, maximum: slope < 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float($0) }
    }

    /// The maximum intensity projection of signed 16-bit `slices`.
    public static func mip(_ slices: [[Int16]], rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        // Flipping the sign bit maps Int16 order onto UInt16 order; it is flipped back before the rescale.
        let folded = try fold(slices.map { $0.map { UInt16(bitPattern: $0) ^ 0x8000 } }, rows: rows, columns: columns, maximum: slope >= 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float(Int16(bitPattern: $0 ^ 0x8000)) }
    }

    /// The minimum intensity projection of signed 16-bit `slices`.
    public static func minip(_ slices: [[Int16]], rows: Int, columns: Int, slope: Float = 1, intercept: Float = 0) throws(ImagingError) -> Image2D {
        let folded = try fold(slices.map { $0.map { UInt16(bitPattern: $0) ^ 0x8000 } }, rows: rows, columns: columns, maximum: slope < 0)
        return rescale(folded, rows: rows, columns: columns, slope: slope, intercept: intercept) { Float(Int16(bitPattern: $0 ^ 0x8000)) }
    }

    /// The slices' pixelwise maximum (or minimum), as stored.
    private static func fold(_ slices: [[UInt16]], rows: Int, columns: Int, maximum: Bool) throws(ImagingError) -> [UInt16] {
        guard rows > 0, columns > 0, let first = slices.first else { throw .invalidShape("a projection needs at least one \(rows)×\(columns) slice") }
        let plane = rows * columns
        for (index, slice) in slices.enumerated() where slice.count != plane {
            throw .shapeMismatch("slice \(index) has \(slice.count) samples; a \(rows)×\(columns) slice has \(plane)")
        }
        var accumulator = first
        accumulator.withUnsafeMutableBufferPointer { output in
            // Blocks of up to 256 Ki samples (a 512×512 plane): the accumulator stays in L2 while each slice streams
            // past in one long run the prefetcher follows; two slices per pass.
            let block = 1 << 18
            for start in stride(from: 0, to: plane, by: block) {
                let count = min(block, plane - start)
                let out = output.baseAddress! + start
                // Four slices per pass: the accumulator is read and written once for every four slices read.
                var s = 1
                while s < slices.count {
                    let last = slices.count - 1
                    let (i1, i2, i3) = (min(s + 1, last), min(s + 2, last), min(s + 3, last))
                    slices[s].withUnsafeBufferPointer { a in
                        slices[i1].withUnsafeBufferPointer { b in
                            slices[i2].withUnsafeBufferPointer { c in
                                slices[i3].withUnsafeBufferPointer { d in
                                    fold(
                                        out, a.baseAddress! + start, b.baseAddress! + start, c.baseAddress! + start, d.baseAddress! + start,
                                        count: count, maximum: maximum
                                    )
                                }
                            }
                        }
                    }
                    s += 4
                }
            }
        }
        return accumulator
    }

    /// The pixelwise maximum (or minimum) of a contiguous stack, as stored.
    private static func fold(stack: [UInt16], slices: Int, rows: Int, columns: Int, maximum: Bool) throws(ImagingError) -> [UInt16] {
        let plane = rows * columns
        guard rows > 0, columns > 0, slices > 0, stack.count == slices * plane else {
            throw .invalidShape("a stack of \(slices) × \(rows)×\(columns) samples cannot hold \(stack.count)")
        }
        var accumulator = Array(stack[0..<plane])
        stack.withUnsafeBufferPointer { source in
            accumulator.withUnsafeMutableBufferPointer { output in
                let base = source.baseAddress!
                let block = 1 << 18
                for start in stride(from: 0, to: plane, by: block) {
                    let count = min(block, plane - start)
                    let out = output.baseAddress! + start
                    var s = 1
                    while s < slices {
                        let last = slices - 1
                        func at(_ index: Int) -> UnsafePointer<UInt16> { base + min(index, last) * plane + start }
                        fold(out, at(s), at(s + 1), at(s + 2), at(s + 3), count: count, maximum: maximum)
                        s += 4
                    }
                }
            }
        }
        return accumulator
    }

    /// `value(sample) · slope + intercept` for every folded sample, exactly as `Image2D`'s integer initialiser maps it.
    @inline(__always)
    private static func rescale(_ folded: [UInt16], rows: Int, columns: Int, slope: Float, intercept: Float, _ value: (UInt16) -> Float) -> Image2D {
        let pixels = [Float](unsafeUninitializedCapacity: folded.count) { buffer, initialized in
            folded.withUnsafeBufferPointer { stored in
                if slope == 1 && intercept == 0 {
                    for i in 0..<stored.count { buffer[i] = value(stored[i]) }
                } else {
                    for i in 0..<stored.count { buffer[i] = value(stored[i]) * slope + intercept }
                }
            }
            initialized = folded.count
        }
        return Image2D(unchecked: rows, columns, pixels)
    }

    /// `out[i] = max(out[i], a[i], b[i], c[i], d[i])` (or min), sixteen lanes at a time.
    @inline(__always)
    private static func fold(
        _ out: UnsafeMutablePointer<UInt16>,
        _ a: UnsafePointer<UInt16>,
        _ b: UnsafePointer<UInt16>,
        _ c: UnsafePointer<UInt16>,
        _ d: UnsafePointer<UInt16>,
        count: Int,
        maximum: Bool
    ) {
        @inline(__always) func load(_ p: UnsafePointer<UInt16>, _ i: Int) -> SIMD16<UInt16> {
            UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<UInt16>.self)
        }
        let whole = count & ~15
        var i = 0
        if maximum {
            while i < whole {
                let folded = pointwiseMax(pointwiseMax(load(a, i), load(b, i)), pointwiseMax(load(c, i), load(d, i)))
                UnsafeMutableRawPointer(out + i).storeBytes(of: pointwiseMax(load(out, i), folded), as: SIMD16<UInt16>.self)
                i += 16
            }
            while i < count {
                out[i] = max(out[i], max(max(a[i], b[i]), max(c[i], d[i])))
                i += 1
            }
        } else {
            while i < whole {
                let folded = pointwiseMin(pointwiseMin(load(a, i), load(b, i)), pointwiseMin(load(c, i), load(d, i)))
                UnsafeMutableRawPointer(out + i).storeBytes(of: pointwiseMin(load(out, i), folded), as: SIMD16<UInt16>.self)
                i += 16
            }
            while i < count {
                out[i] = min(out[i], min(min(a[i], b[i]), min(c[i], d[i])))
                i += 1
            }
        }
    }
}
