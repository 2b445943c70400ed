// Projections of a volume along one axis (numpy's sum / max / min along that axis). Axis 0 is the slice axis
// and yields a rows × columns image; axis 1 yields slices × columns; axis 2 yields slices × rows.

extension Volume {
    /// The sum of the voxels along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func sumProjection(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, Sum.self)
    }

    /// The maximum intensity projection along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func mip(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, Greatest.self)
    }

    /// The minimum intensity projection along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func minip(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, Least.self)
    }

    /// Axes 0 and 1 fold whole contiguous rows into an accumulator row; axis 2 reduces each row across its lanes.
    private func project<R: Reduction>(axis: Int, _: R.Type) throws(ImagingError) -> Image2D {
        let slices = self.slices
        let rows = self.rows
        let columns = self.columns
        let plane = rows * columns
        switch axis {
        case 0:
            var output = Array(voxels[0..<plane])
            voxels.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { destination in
                    // Blocks of the plane small enough that the accumulator stays in L1 while every slice streams past.
                    let block = 4096
                    for start in stride(from: 0, to: plane, by: block) {
                        let count = min(block, plane - start)
                        let out = destination.baseAddress! + start
                        // Two slices per pass halve the accumulator's loads and stores.
                        var s = 1
                        while s + 1 < slices {
                            let a = source.baseAddress! + s * plane + start
                            let b = a + plane
                            for i in 0..<count { out[i] = R.combine(out[i], R.combine(a[i], b[i])) }
                            s += 2
                        }
                        if s < slices {
                            let a = source.baseAddress! + s * plane + start
                            for i in 0..<count { out[i] = R.combine(out[i], a[i]) }
                        }
                    }
                }
            }
            return Image2D(unchecked: rows, columns, output)
        case 1:
            var output = [Float](repeating: 0, count: slices * columns)
            voxels.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { destination in
                    for s in 0..<slices {
                        let out = destination.baseAddress! + s * columns
                        let slice = source.baseAddress! + s * plane
                        out.update(from: slice, count: columns)
                        for r in 1..<max(rows, 1) {
                            let row = slice + r * columns
                            for c in 0..<columns { out[c] = R.combine(out[c], row[c]) }
                        }
                    }
                }
            }
            return Image2D(unchecked: slices, columns, output)
        case 2:
            var output = [Float](repeating: 0, count: slices * rows)
            voxels.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { destination in
                    for i in 0..<(slices * rows) {
                        destination[i] = reduceRow(source.baseAddress! + i * columns, count: columns, R.self)
                    }
                }
            }
            return Image2D(unchecked: slices, rows, output)
        default:
            throw .invalidAxis("projection axis \(axis) of a 3-D volume")
        }
    }
}

/// One projection's arithmetic, on scalars and on eight lanes at once (shared with ``ProjectionAccumulator``).
protocol Reduction {
    static func combine(_ a: Float, _ b: Float) -> Float
    static func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float>
}

private enum Sum: Reduction {
    @inline(__always) static func combine(_ a: Float, _ b: Float) -> Float { a + b }
    @inline(__always) static func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a + b }
}

/// The maximum, with a NaN propagating as numpy's does (the first NaN met wins, so the order of a fold never changes
/// the bits of its result).
enum Greatest: Reduction {
    @inline(__always) static func combine(_ a: Float, _ b: Float) -> Float { a.isNaN || b < a ? a : b }
    @inline(__always) static func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        // b < a ? a : b is one MAXPS; a NaN `a` then goes back in.
        b.replacing(with: a, where: b .< a).replacing(with: a, where: a .!= a)
    }
}

/// The minimum, with NaN as for ``Greatest``.
enum Least: Reduction {
    @inline(__always) static func combine(_ a: Float, _ b: Float) -> Float { a.isNaN || b > a ? a : b }
    @inline(__always) static func combine(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        // b > a ? a : b is one MINPS; a NaN `a` then goes back in.
        b.replacing(with: a, where: b .> a).replacing(with: a, where: a .!= a)
    }
}

/// Reduces `count` contiguous values with eight independent lanes, then folds the lanes and the tail.
@inline(__always)
func reduceRow<R: Reduction>(_ row: UnsafePointer<Float>, count: Int, _: R.Type) -> Float {
    let whole = count & ~7
    guard whole > 0 else {
        var result = row[0]
        for i in 1..<max(count, 1) { result = R.combine(result, row[i]) }
        return result
    }
    let raw = UnsafeRawPointer(row)
    var lanes = raw.loadUnaligned(as: SIMD8<Float>.self)
    var i = 8
    while i < whole {
        lanes = R.combine(lanes, raw.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride, as: SIMD8<Float>.self))
        i += 8
    }
    var result = lanes[0]
    for lane in 1..<8 { result = R.combine(result, lanes[lane]) }
    while i < count {
        result = R.combine(result, row[i])
        i += 1
    }
    return result
}
