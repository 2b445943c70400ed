// Projections of a volume along one axis (numpy's sum / max / min along that axis). Axis 0 is the slice axis
// and yields a rows × columns image; axis 1 yields slices × columns; axis 2 yields slices × rows.

extension Volume {
    /// The sum of the voxels along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func sumProjection(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, +) { row in
            // Eight independent partial sums keep the reduction vectorisable.
            var lanes = SIMD8<Float>()
            let whole = row.count & ~7
            var i = 0
            while i < whole {
                lanes += SIMD8<Float>(row[i], row[i + 1], row[i + 2], row[i + 3], row[i + 4], row[i + 5], row[i + 6], row[i + 7])
                i += 8
            }
            var total = lanes.sum()
            while i < row.count {
                total += row[i]
                i += 1
            }
            return total
        }
    }

    /// The maximum intensity projection along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func mip(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, { $0 > $1 ? $0 : $1 }) { row in
            var best = row[0]
            for value in row where value > best { best = value }
            return best
        }
    }

    /// The minimum intensity projection along `axis` (0, 1 or 2). Throws `invalidAxis` otherwise.
    public func minip(axis: Int = 0) throws(ImagingError) -> Image2D {
        try project(axis: axis, { $0 < $1 ? $0 : $1 }) { row in
            var best = row[0]
            for value in row where value < best { best = value }
            return best
        }
    }

    /// Axes 0 and 1 fold whole contiguous rows into an accumulator row with `combine`; axis 2 reduces each row with `reduce`.
    @inline(__always)
    private func project(
        axis: Int,
        _ combine: (Float, Float) -> Float,
        reduce: (UnsafeBufferPointer<Float>) -> Float
    ) throws(ImagingError) -> Image2D {
        let slices = self.slices
        let rows = self.rows
        let columns = self.columns
        let plane = rows * columns
        switch axis {
        case 0:
            var output = Array(voxels[0..<plane])
            voxels.withUnsafeBufferPointer { source in
                output.withUnsafeMutableBufferPointer { destination in
                    let out = destination.baseAddress!
                    for s in 1..<max(slices, 1) {
                        let slice = source.baseAddress! + s * plane
                        for i in 0..<plane { out[i] = combine(out[i], slice[i]) }
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
                            for c in 0..<columns { out[c] = combine(out[c], row[c]) }
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
                        destination[i] = reduce(UnsafeBufferPointer(rebasing: source[(i * columns)..<((i + 1) * columns)]))
                    }
                }
            }
            return Image2D(unchecked: slices, rows, output)
        default:
            throw .invalidAxis("projection axis \(axis) of a 3-D volume")
        }
    }
}
