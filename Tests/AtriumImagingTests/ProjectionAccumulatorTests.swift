import AtriumImaging
import Testing

@Suite("AtriumImaging streaming projections: slice by slice, serialised, and merged across shards")
struct ProjectionAccumulatorTests {
    typealias Kind = ProjectionAccumulator.Kind

    /// A deterministic pseudo-random volume (SplitMix64) with values in [-1000, 1000), or integers in that range.
    private func volume(slices: Int, rows: Int, columns: Int, seed: UInt64, integers: Bool = false) throws -> Volume {
        var state = seed
        let voxels = (0..<(slices * rows * columns)).map { _ -> Float in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let unit = Float(z >> 40) / Float(1 << 24)
            return integers ? Float(Int(unit * 2000) - 1000) : unit * 2000 - 1000
        }
        return try Volume(slices: slices, rows: rows, columns: columns, voxels: voxels)
    }

    private func accumulate(_ volume: Volume, _ kind: Kind, axis: Int, range: Range<Int>? = nil) throws -> ProjectionAccumulator {
        var accumulator = try ProjectionAccumulator(kind: kind, axis: axis, rows: volume.rows, columns: volume.columns)
        for s in range ?? 0..<volume.slices { try accumulator.add(volume.slice(s)) }
        return accumulator
    }

    private func bits(_ image: Image2D) -> [UInt32] { image.pixels.map(\.bitPattern) }

    @Test("maximum and minimum equal Volume.mip and Volume.minip exactly along every axis", arguments: [0, 1, 2])
    func extremaMatchVolume(axis: Int) throws {
        // 21 slices: more than two axis-0 batches, and 13 columns: a SIMD8 body and a tail.
        let volume = try volume(slices: 21, rows: 11, columns: 13, seed: 1)
        #expect(try accumulate(volume, .maximum, axis: axis).result() == volume.mip(axis: axis))
        #expect(try accumulate(volume, .minimum, axis: axis).result() == volume.minip(axis: axis))
        let wide = try self.volume(slices: 3, rows: 5, columns: 64, seed: 2)
        #expect(try accumulate(wide, .maximum, axis: axis).result() == wide.mip(axis: axis))
        #expect(try accumulate(wide, .minimum, axis: axis).result() == wide.minip(axis: axis))
    }

    @Test("sums are close to Volume.sumProjection, and exactly the integer sum on integer data", arguments: [0, 1, 2])
    func sums(axis: Int) throws {
        let volume = try volume(slices: 21, rows: 11, columns: 13, seed: 3)
        let streamed = try accumulate(volume, .sum, axis: axis).result()
        let reference = try volume.sumProjection(axis: axis)
        #expect(streamed.rows == reference.rows && streamed.columns == reference.columns)
        for (a, e) in zip(streamed.pixels, reference.pixels) {
            #expect(abs(a - e) <= 1e-5 * max(abs(e), 1000), "\(a) vs \(e)")
        }

        let integers = try self.volume(slices: 21, rows: 11, columns: 13, seed: 4, integers: true)
        let accumulator = try accumulate(integers, .sum, axis: axis)
        #expect(accumulator.isExact)
        let (slices, rows, columns) = (integers.slices, integers.rows, integers.columns)
        var expected: [Int] = []
        switch axis {
        case 0:
            expected = (0..<(rows * columns)).map { p in (0..<slices).reduce(0) { $0 + Int(integers.voxels[$1 * rows * columns + p]) } }
        case 1:
            for s in 0..<slices {
                for c in 0..<columns { expected.append((0..<rows).reduce(0) { $0 + Int(integers.voxels[(s * rows + $1) * columns + c]) }) }
            }
        default:
            for s in 0..<slices {
                for r in 0..<rows { expected.append((0..<columns).reduce(0) { $0 + Int(integers.voxels[(s * rows + r) * columns + $1]) }) }
            }
        }
        #expect(try accumulator.result().pixels == expected.map { Float($0) })
    }

    @Test("every split of a 7-slice stack, merged, is bit-identical to one accumulator", arguments: [0, 1, 2])
    func splitsAreBitIdentical(axis: Int) throws {
        for integers in [false, true] {
            let volume = try volume(slices: 7, rows: 5, columns: 19, seed: 5, integers: integers)
            for kind in Kind.allCases {
                let whole = try accumulate(volume, kind, axis: axis)
                #expect(whole.isExact)
                let expected = try bits(whole.result())
                for k in 0...7 {
                    var first = try accumulate(volume, kind, axis: axis, range: 0..<k)
                    let second = try accumulate(volume, kind, axis: axis, range: k..<7)
                    try first.merge(second)
                    #expect(first.sliceCount == 7)
                    #expect(first.isExact)
                    #expect(try bits(first.result()) == expected, "\(kind) axis \(axis) split at \(k)")
                    #expect(first.partial == whole.partial, "\(kind) axis \(axis) split at \(k)")
                    // Through the wire: both shards serialised, read back and merged.
                    var left = try ProjectionAccumulator(partial: .init(bytes: accumulate(volume, kind, axis: axis, range: 0..<k).partial.bytes))
                    try left.merge(ProjectionAccumulator(partial: .init(bytes: second.partial.bytes)))
                    #expect(try bits(left.result()) == expected, "\(kind) axis \(axis) split at \(k), serialised")
                }
            }
        }
    }

    @Test("three-way splits and NaNs merge as sequential adds do")
    func nanAndThreeWay() throws {
        var voxels = try volume(slices: 9, rows: 3, columns: 9, seed: 6).voxels
        voxels[5] = .nan  // slice 0
        voxels[4 * 27 + 5] = Float(bitPattern: 0x7FC0_0001)  // a second NaN, another payload, in the same pixel
        voxels[6 * 27 + 7] = .nan  // slice 6 only
        voxels[8 * 27 + 9] = .nan  // the last slice
        let volume = try Volume(slices: 9, rows: 3, columns: 9, voxels: voxels)
        for axis in 0...2 {
            for kind in [Kind.maximum, .minimum] {
                let expected = try bits(accumulate(volume, kind, axis: axis).result())
                for (a, b) in [(2, 5), (1, 8), (4, 6), (0, 9)] {
                    var first = try accumulate(volume, kind, axis: axis, range: 0..<a)
                    try first.merge(accumulate(volume, kind, axis: axis, range: a..<b))
                    try first.merge(accumulate(volume, kind, axis: axis, range: b..<9))
                    #expect(try bits(first.result()) == expected, "\(kind) axis \(axis) split at \(a), \(b)")
                }
            }
        }
        let mip = try accumulate(volume, .maximum, axis: 0).result()
        #expect(mip.pixels[5].bitPattern == Float.nan.bitPattern)  // the first NaN sticks
        #expect(mip.pixels[7].isNaN && mip.pixels[9].isNaN)
        #expect(!mip.pixels[6].isNaN)
    }

    @Test("isExact is false once an addition rounds, and stays false through merges")
    func exactness() throws {
        let values: [Float] = [1e30, 1, -1e30]
        var accumulator = try ProjectionAccumulator(kind: .sum, axis: 0, rows: 1, columns: 1)
        for value in values { try accumulator.add(Image2D(rows: 1, columns: 1, pixels: [value])) }
        #expect(!accumulator.isExact)
        #expect(!accumulator.partial.exact)
        var more = try ProjectionAccumulator(kind: .sum, axis: 0, rows: 1, columns: 1)
        try more.add(Image2D(rows: 1, columns: 1, pixels: [2]))
        #expect(more.isExact)
        try more.merge(accumulator)
        #expect(!more.isExact)
        #expect(try !ProjectionAccumulator(partial: .init(bytes: accumulator.partial.bytes)).isExact)
        // Along axes 1 and 2 the rounding happens inside one slice.
        var rows = try ProjectionAccumulator(kind: .sum, axis: 1, rows: 3, columns: 1)
        try rows.add(Image2D(rows: 3, columns: 1, pixels: values))
        #expect(!rows.isExact)
        var columns = try ProjectionAccumulator(kind: .sum, axis: 2, rows: 1, columns: 11)
        try columns.add(Image2D(rows: 1, columns: 11, pixels: [1e30, 1, 0, 0, 0, 0, 0, 0, -1e30, 0, 0]))
        #expect(!columns.isExact)
        // The merge itself can round: 2^60 and 1 are each exact.
        var big = try ProjectionAccumulator(kind: .sum, axis: 0, rows: 1, columns: 1)
        try big.add(Image2D(rows: 1, columns: 1, pixels: [0x1p60]))
        var one = try ProjectionAccumulator(kind: .sum, axis: 0, rows: 1, columns: 1)
        try one.add(Image2D(rows: 1, columns: 1, pixels: [1]))
        #expect(big.isExact && one.isExact)
        try big.merge(one)
        #expect(!big.isExact)
        // NaN and infinity clear it too; maximum and minimum are always exact.
        var nan = try ProjectionAccumulator(kind: .sum, axis: 0, rows: 1, columns: 2)
        try nan.add(Image2D(rows: 1, columns: 2, pixels: [1, 2]))
        try nan.add(Image2D(rows: 1, columns: 2, pixels: [.nan, 2]))
        #expect(!nan.isExact)
        var maximum = try ProjectionAccumulator(kind: .maximum, axis: 0, rows: 1, columns: 1)
        for value in values { try maximum.add(Image2D(rows: 1, columns: 1, pixels: [value])) }
        #expect(maximum.isExact)
    }

    @Test("partials round-trip through bytes, before and after the first slice, and continue")
    func partialRoundTrip() throws {
        let volume = try volume(slices: 10, rows: 4, columns: 9, seed: 7)
        for axis in 0...2 {
            for kind in Kind.allCases {
                let empty = try ProjectionAccumulator(kind: kind, axis: axis, rows: 4, columns: 9)
                #expect(try ProjectionAccumulator.Partial(bytes: empty.partial.bytes) == empty.partial)
                #expect(throws: ImagingError.invalidShape("")) { try empty.result() }
                let half = try accumulate(volume, kind, axis: axis, range: 0..<5)
                let partial = half.partial
                #expect(partial.sliceCount == 5 && partial.kind == kind && partial.axis == axis)
                #expect(try ProjectionAccumulator.Partial(bytes: partial.bytes) == partial)
                var resumed = try ProjectionAccumulator(partial: ProjectionAccumulator.Partial(bytes: partial.bytes))
                for s in 5..<10 { try resumed.add(volume.slice(s)) }
                #expect(try bits(resumed.result()) == bits(accumulate(volume, kind, axis: axis).result()))
            }
        }
    }

    @Test("malformed bytes are refused with invalidPartial")
    func malformedBytes() throws {
        let volume = try volume(slices: 3, rows: 2, columns: 3, seed: 8)
        let good = try accumulate(volume, .sum, axis: 0).partial.bytes
        let refused = ImagingError.invalidPartial("")
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: []) }
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: Array(good[0..<20])) }
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: Array(good.dropLast())) }
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: good + [0]) }
        func patched(_ offset: Int, _ value: UInt8) -> [UInt8] {
            var bytes = good
            bytes[offset] = value
            return bytes
        }
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(0, 0x41 ^ 0x20)) }  // magic
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(4, 2)) }  // version
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(5, 3)) }  // kind
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(5, 1)) }  // maximum with a Float64 payload
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(6, 3)) }  // axis
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(7, 2)) }  // flags
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(8, 0)) }  // rows 0
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(15, 0xFF)) }  // rows beyond Int
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(24, 0)) }  // no slices yet a payload
        #expect(throws: refused) { try ProjectionAccumulator.Partial(bytes: patched(8, 0x10)) }  // payload too short for the rows
        #expect(try ProjectionAccumulator.Partial(bytes: patched(24, 9)).sliceCount == 9)  // axis 0 payload does not grow with slices
    }

    @Test("wrong shapes, axes and incompatible merges are refused")
    func refusals() throws {
        var accumulator = try ProjectionAccumulator(kind: .maximum, axis: 0, rows: 2, columns: 3)
        #expect(throws: ImagingError.shapeMismatch("")) { try accumulator.add(Image2D(rows: 3, columns: 2)) }
        #expect(throws: ImagingError.invalidAxis("")) { try ProjectionAccumulator(kind: .sum, axis: 3, rows: 2, columns: 2) }
        #expect(throws: ImagingError.invalidAxis("")) { try ProjectionAccumulator(kind: .sum, axis: -1, rows: 2, columns: 2) }
        #expect(throws: ImagingError.invalidShape("")) { try ProjectionAccumulator(kind: .sum, axis: 0, rows: 0, columns: 2) }
        #expect(throws: ImagingError.invalidShape("")) { try ProjectionAccumulator(kind: .sum, axis: 0, rows: Int.max, columns: 2) }
        try accumulator.add(Image2D(rows: 2, columns: 3))
        #expect(throws: ImagingError.invalidPartial("")) { try accumulator.merge(ProjectionAccumulator(kind: .minimum, axis: 0, rows: 2, columns: 3)) }
        #expect(throws: ImagingError.invalidPartial("")) { try accumulator.merge(ProjectionAccumulator(kind: .maximum, axis: 1, rows: 2, columns: 3)) }
        #expect(throws: ImagingError.shapeMismatch("")) { try accumulator.merge(ProjectionAccumulator(kind: .maximum, axis: 0, rows: 3, columns: 2)) }
        #expect(accumulator.sliceCount == 1)
    }
}

@Suite("StoredProjection")
struct StoredProjectionTests {
    @Test("MIP and MinIP of stored 16-bit slices equal the Float32 volume's bit for bit, for positive and negative slopes")
    func equalsVolume() throws {
        var generator = SystemRandomNumberGenerator()
        let (rows, columns, count) = (7, 37, 5)
        let unsigned = (0..<count).map { _ in (0..<(rows * columns)).map { _ in UInt16.random(in: 0...UInt16.max, using: &generator) } }
        let signed = unsigned.map { $0.map { Int16(bitPattern: $0) } }
        for (slope, intercept) in [(Float(1), Float(0)), (0.37, -1024), (-2, 7)] {
            let u = try Volume(slices: count, rows: rows, columns: columns, samples: unsigned.flatMap { $0 }, slope: slope, intercept: intercept)
            #expect(try StoredProjection.mip(unsigned, rows: rows, columns: columns, slope: slope, intercept: intercept) == u.mip())
            #expect(try StoredProjection.minip(unsigned, rows: rows, columns: columns, slope: slope, intercept: intercept) == u.minip())
            #expect(try StoredProjection.mip(stack: unsigned.flatMap { $0 }, slices: count, rows: rows, columns: columns, slope: slope, intercept: intercept) == u.mip())
            #expect(try StoredProjection.minip(stack: unsigned.flatMap { $0 }, slices: count, rows: rows, columns: columns, slope: slope, intercept: intercept) == u.minip())
            let s = try Volume(slices: count, rows: rows, columns: columns, samples: signed.flatMap { $0 }, slope: slope, intercept: intercept)
            #expect(try StoredProjection.mip(signed, rows: rows, columns: columns, slope: slope, intercept: intercept) == s.mip())
            #expect(try StoredProjection.minip(signed, rows: rows, columns: columns, slope: slope, intercept: intercept) == s.minip())
        }
        #expect(throws: ImagingError.self) { try StoredProjection.mip([[UInt16]](), rows: 1, columns: 1) }
        #expect(throws: ImagingError.self) { try StoredProjection.mip([[1, 2], [3]] as [[UInt16]], rows: 1, columns: 2) }
        #expect(throws: ImagingError.self) { try StoredProjection.mip(stack: [1, 2, 3], slices: 2, rows: 1, columns: 2) }
    }
}
