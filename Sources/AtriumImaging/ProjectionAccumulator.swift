// Streaming projections: a series is projected slice by slice without holding the stack, and the gateway's
// contiguous shards of one series are combined exactly ("max of maxes, sum of sums").
//
// Maximum and minimum are exactly associative, so any split gives the bit-identical result. A sum along axis 0
// accumulates in Float64 and checks every addition with TwoSum; while no addition has rounded, the running sum is the
// exact mathematical sum, so every exact run, split or not, rounds the same value to Float32 once. Along axes 1 and
// 2 each slice yields its own output row, so splits never change the values.

/// A projection along one axis of a series fed one slice at a time, whose state can be serialised and whose
/// shards can be merged in slice order.
///
/// Along axis 0 the accumulator keeps, by reference, up to eight added slices before folding them blockwise into
/// its running image (so the running image stays in cache while they stream past); every observer folds first.
public struct ProjectionAccumulator: Sendable {
    /// The reduction.
    public enum Kind: Sendable, CaseIterable {
        /// The sum of the values (numpy `sum`), accumulated in Float64 and rounded to Float32 once.
        case sum
        /// The maximum intensity projection, equal to `Volume.mip` on NaN-free data. A NaN anywhere along the axis
        /// makes the value NaN (as numpy's `max`), the first NaN's bits being kept along axis 0, so merged shards
        /// match a single run bit for bit, NaNs included.
        case maximum
        /// The minimum intensity projection, equal to `Volume.minip` on NaN-free data; NaNs as for `maximum`.
        case minimum
    }

    /// The reduction.
    public let kind: Kind
    /// The axis projected along: 0 (slices), 1 (rows) or 2 (columns).
    public let axis: Int
    /// Rows of every slice.
    public let rows: Int
    /// Columns of every slice.
    public let columns: Int
    /// Slices added so far, merged ones included.
    public private(set) var sliceCount: Int

    /// False once a Float64 addition of a sum has rounded (or met a NaN or an infinity); always true for maximum and minimum.
    private var exact: Bool
    /// Axis-0 sum: the running Float64 sums, one a pixel (empty until the first slice is folded).
    private var sums: [Double]
    /// Axis-0 maximum or minimum: the running image (empty until the first slice is folded). Axes 1 and 2: the output rows so far.
    private var values: [Float]
    /// Axis 0: slices added but not yet folded, in order.
    private var pending: [Image2D]

    /// Slices kept before an axis-0 fold.
    private static let batch = 8

    /// An empty accumulator for `rows × columns` slices. Throws `invalidAxis` unless `axis` is 0, 1 or 2, and
    /// `invalidShape` unless both dimensions are positive and their product fits.
    public init(kind: Kind, axis: Int, rows: Int, columns: Int) throws(ImagingError) {
        guard (0...2).contains(axis) else { throw .invalidAxis("projection axis \(axis) of a 3-D series") }
        guard rows > 0, columns > 0, planeBytes(rows, columns) != nil else { throw .invalidShape("\(rows)×\(columns) slices") }
        self.kind = kind
        self.axis = axis
        self.rows = rows
        self.columns = columns
        self.sliceCount = 0
        self.exact = true
        self.sums = []
        self.values = []
        self.pending = []
    }

    /// An accumulator that continues from `partial`. Throws `invalidPartial` if the partial is inconsistent.
    public init(partial: Partial) throws(ImagingError) {
        try Partial.validate(
            kind: partial.kind, axis: partial.axis, rows: partial.rows, columns: partial.columns, sliceCount: partial.sliceCount,
            sums: partial.sums.count, values: partial.values.count, exact: partial.exact
        )
        self.kind = partial.kind
        self.axis = partial.axis
        self.rows = partial.rows
        self.columns = partial.columns
        self.sliceCount = partial.sliceCount
        self.exact = partial.exact
        self.sums = partial.sums
        self.values = partial.values
        self.pending = []
    }

    /// Whether the result is independent of how the series was split: always for maximum and minimum; for a sum,
    /// whether no Float64 addition so far has rounded (nor met a NaN or an infinity), in which case the result is the
    /// exact sum rounded once to Float32. When false, recompute the projection unsplit.
    public var isExact: Bool {
        if pending.isEmpty || kind != .sum { return exact }
        var folded = self
        folded.fold()
        return folded.exact
    }

    /// Folds the next slice of the series in. Throws `shapeMismatch` unless it is `rows × columns`.
    public mutating func add(_ slice: Image2D) throws(ImagingError) {
        guard slice.rows == rows, slice.columns == columns else {
            throw .shapeMismatch("slice \(slice.rows)×\(slice.columns) in a \(rows)×\(columns) projection")
        }
        sliceCount += 1
        switch axis {
        case 0:
            pending.append(slice)
            if pending.count >= Self.batch { fold() }
        case 1:
            if kind == .sum {
                if !appendColumnSums(slice) { exact = false }
            } else {
                kind == .maximum ? appendColumnExtrema(slice, Greatest.self) : appendColumnExtrema(slice, Least.self)
            }
        default:
            if kind == .sum {
                if !appendRowSums(slice) { exact = false }
            } else {
                kind == .maximum ? appendRowExtrema(slice, Greatest.self) : appendRowExtrema(slice, Least.self)
            }
        }
    }

    /// Appends `later`, which covers the slices that come after this accumulator's. Throws `invalidPartial` if the
    /// kinds or axes differ and `shapeMismatch` if the slice shapes do. For a sum, the result is exact only if both
    /// were and the combining additions did not round.
    public mutating func merge(_ later: ProjectionAccumulator) throws(ImagingError) {
        guard later.kind == kind, later.axis == axis else {
            throw .invalidPartial("cannot merge a \(later.kind) along axis \(later.axis) into a \(kind) along axis \(axis)")
        }
        guard later.rows == rows, later.columns == columns else {
            throw .shapeMismatch("merging \(later.rows)×\(later.columns) slices into a \(rows)×\(columns) projection")
        }
        if later.sliceCount == 0 { return }
        if sliceCount == 0 {
            self = later
            return
        }
        switch axis {
        case 0:
            fold()
            var later = later
            later.fold()
            switch kind {
            case .sum:
                let inexact = sums.withUnsafeMutableBufferPointer { acc in
                    later.sums.withUnsafeBufferPointer { other in addSums(acc.baseAddress!, other.baseAddress!, count: acc.count) }
                }
                exact = exact && later.exact && !inexact
            case .maximum:
                values.withUnsafeMutableBufferPointer { acc in
                    later.values.withUnsafeBufferPointer { other in foldExtrema(acc.baseAddress!, other.baseAddress!, count: acc.count, Greatest.self) }
                }
            case .minimum:
                values.withUnsafeMutableBufferPointer { acc in
                    later.values.withUnsafeBufferPointer { other in foldExtrema(acc.baseAddress!, other.baseAddress!, count: acc.count, Least.self) }
                }
            }
        default:
            values.append(contentsOf: later.values)
            exact = exact && later.exact
        }
        sliceCount += later.sliceCount
    }

    /// The state so far, to be serialised with `Partial.bytes` and continued with `init(partial:)`.
    public var partial: Partial {
        var folded = self
        folded.fold()
        return Partial(
            kind: kind, axis: axis, rows: rows, columns: columns, sliceCount: sliceCount,
            sums: folded.sums, values: folded.values, exact: folded.exact
        )
    }

    /// The projection: `rows × columns` along axis 0, `sliceCount × columns` along axis 1 and `sliceCount × rows`
    /// along axis 2. Sums are rounded from Float64 to Float32 once. Throws `invalidShape` if no slice was added.
    public func result() throws(ImagingError) -> Image2D {
        guard sliceCount > 0 else { throw .invalidShape("no slices were added to the projection") }
        switch axis {
        case 0:
            var folded = self
            folded.fold()
            return Image2D(unchecked: rows, columns, kind == .sum ? folded.sums.map { Float($0) } : folded.values)
        case 1:
            return Image2D(unchecked: sliceCount, columns, values)
        default:
            return Image2D(unchecked: sliceCount, rows, values)
        }
    }

    // MARK: Axis 0

    /// Folds the pending slices into the running image, block by block so each block stays in L1 while they stream past.
    private mutating func fold() {
        guard !pending.isEmpty else { return }
        var batch = pending[...]
        pending.removeAll(keepingCapacity: true)
        switch kind {
        case .sum:
            if sums.isEmpty { sums = batch.removeFirst().pixels.map { Double($0) } }
            if batch.isEmpty { return }
            let plane = rows * columns
            var inexact = false
            sums.withUnsafeMutableBufferPointer { acc in
                for start in stride(from: 0, to: plane, by: 2048) {
                    let count = min(2048, plane - start)
                    let out = acc.baseAddress! + start
                    // Two slices per pass, still added one after the other, halve the running sums' loads and stores.
                    var s = batch.startIndex
                    while s + 1 < batch.endIndex {
                        batch[s].pixels.withUnsafeBufferPointer { first in
                            batch[s + 1].pixels.withUnsafeBufferPointer { second in
                                if addFloats(out, first.baseAddress! + start, second.baseAddress! + start, count: count) { inexact = true }
                            }
                        }
                        s += 2
                    }
                    if s < batch.endIndex {
                        batch[s].pixels.withUnsafeBufferPointer { source in
                            if addFloats(out, source.baseAddress! + start, count: count) { inexact = true }
                        }
                    }
                }
            }
            if inexact { exact = false }
        case .maximum:
            foldValues(&batch, Greatest.self)
        case .minimum:
            foldValues(&batch, Least.self)
        }
    }

    private mutating func foldValues<R: Reduction>(_ batch: inout ArraySlice<Image2D>, _: R.Type) {
        if values.isEmpty { values = batch.removeFirst().pixels }
        if batch.isEmpty { return }
        let plane = rows * columns
        values.withUnsafeMutableBufferPointer { acc in
            for start in stride(from: 0, to: plane, by: 4096) {
                let count = min(4096, plane - start)
                let out = acc.baseAddress! + start
                // Two slices per pass halve the running image's loads and stores; the rule is associative.
                var s = batch.startIndex
                while s + 1 < batch.endIndex {
                    batch[s].pixels.withUnsafeBufferPointer { first in
                        batch[s + 1].pixels.withUnsafeBufferPointer { second in
                            foldExtrema(out, first.baseAddress! + start, second.baseAddress! + start, count: count, R.self)
                        }
                    }
                    s += 2
                }
                if s < batch.endIndex {
                    batch[s].pixels.withUnsafeBufferPointer { source in
                        foldExtrema(out, source.baseAddress! + start, count: count, R.self)
                    }
                }
            }
        }
    }

    // MARK: Axes 1 and 2

    /// Axis 1: appends the slice's rows folded into one row of `columns` values.
    private mutating func appendColumnExtrema<R: Reduction>(_ slice: Image2D, _: R.Type) {
        let base = values.count
        let rows = self.rows
        let columns = self.columns
        slice.pixels.withUnsafeBufferPointer { source in
            values.append(contentsOf: source[0..<columns])
            values.withUnsafeMutableBufferPointer { output in
                let out = output.baseAddress! + base
                for r in 1..<max(rows, 1) { foldExtrema(out, source.baseAddress! + r * columns, count: columns, R.self) }
            }
        }
    }

    /// Axis 1 sum: folds the slice's rows into one Float64 row, then appends it rounded. Returns whether every addition was exact.
    private mutating func appendColumnSums(_ slice: Image2D) -> Bool {
        let rows = self.rows
        let columns = self.columns
        var inexact = false
        slice.pixels.withUnsafeBufferPointer { source in
            var row = source[0..<columns].map { Double($0) }
            row.withUnsafeMutableBufferPointer { acc in
                // Two rows per pass, still added one after the other.
                var r = 1
                while r + 1 < rows {
                    let first = source.baseAddress! + r * columns
                    if addFloats(acc.baseAddress!, first, first + columns, count: columns) { inexact = true }
                    r += 2
                }
                if r < rows, addFloats(acc.baseAddress!, source.baseAddress! + r * columns, count: columns) { inexact = true }
            }
            values.append(contentsOf: row.lazy.map { Float($0) })
        }
        return !inexact
    }

    /// Axis 2: appends each row of the slice reduced to one value.
    private mutating func appendRowExtrema<R: Reduction>(_ slice: Image2D, _: R.Type) {
        let base = values.count
        let columns = self.columns
        values.append(contentsOf: repeatElement(0, count: rows))
        slice.pixels.withUnsafeBufferPointer { source in
            values.withUnsafeMutableBufferPointer { output in
                let out = output.baseAddress! + base
                for r in 0..<rows { out[r] = reduceRow(source.baseAddress! + r * columns, count: columns, R.self) }
            }
        }
    }

    /// Axis 2 sum: appends each row of the slice summed in Float64 and rounded. Returns whether every addition was exact.
    private mutating func appendRowSums(_ slice: Image2D) -> Bool {
        let base = values.count
        let columns = self.columns
        var inexact = false
        values.append(contentsOf: repeatElement(0, count: rows))
        slice.pixels.withUnsafeBufferPointer { source in
            values.withUnsafeMutableBufferPointer { output in
                let out = output.baseAddress! + base
                for r in 0..<rows { out[r] = Float(sumRow(source.baseAddress! + r * columns, count: columns, &inexact)) }
            }
        }
        return !inexact
    }
}

extension ProjectionAccumulator {
    /// An accumulator's state: what a shard sends to be merged, or what a stream checkpoints.
    ///
    /// `bytes` is little-endian: a 32-byte header (the ASCII magic `APRJ`, a version byte 1, the kind byte
    /// 0 sum / 1 maximum / 2 minimum, the axis byte, a flags byte whose bit 0 is `exact`, then rows, columns and
    /// the slice count as UInt64), followed by `sums` as Float64 bit patterns or `values` as Float32 bit patterns.
    public struct Partial: Sendable, Equatable {
        /// The reduction.
        public let kind: Kind
        /// The axis projected along: 0, 1 or 2.
        public let axis: Int
        /// Rows of every slice.
        public let rows: Int
        /// Columns of every slice.
        public let columns: Int
        /// Slices accumulated.
        public let sliceCount: Int
        /// A sum along axis 0: the running Float64 sums, `rows × columns` of them (none before the first slice). Otherwise empty.
        public let sums: [Double]
        /// A maximum or minimum along axis 0: the running image, `rows × columns` values (none before the first slice).
        /// Axis 1: `sliceCount × columns` values; axis 2: `sliceCount × rows` values. Empty for a sum along axis 0.
        public let values: [Float]
        /// Whether every Float64 addition of a sum was exact; always true for maximum and minimum.
        public let exact: Bool

        init(kind: Kind, axis: Int, rows: Int, columns: Int, sliceCount: Int, sums: [Double], values: [Float], exact: Bool) {
            self.kind = kind
            self.axis = axis
            self.rows = rows
            self.columns = columns
            self.sliceCount = sliceCount
            self.sums = sums
            self.values = values
            self.exact = exact
        }

        private static let magic: [UInt8] = Array("APRJ".utf8)
        private static let version: UInt8 = 1
        private static let headerSize = 32

        /// The state serialised little-endian as described on the type.
        public var bytes: [UInt8] {
            let size = Self.headerSize + sums.count * 8 + values.count * 4
            return [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                let raw = UnsafeMutableRawBufferPointer(buffer)
                for (i, byte) in Self.magic.enumerated() { raw[i] = byte }
                raw[4] = Self.version
                raw[5] = kind.code
                raw[6] = UInt8(axis)
                raw[7] = exact ? 1 : 0
                raw.storeBytes(of: UInt64(rows).littleEndian, toByteOffset: 8, as: UInt64.self)
                raw.storeBytes(of: UInt64(columns).littleEndian, toByteOffset: 16, as: UInt64.self)
                raw.storeBytes(of: UInt64(sliceCount).littleEndian, toByteOffset: 24, as: UInt64.self)
                var offset = Self.headerSize
                for value in sums {
                    raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset, as: UInt64.self)
                    offset += 8
                }
                for value in values {
                    raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset, as: UInt32.self)
                    offset += 4
                }
                initialized = size
            }
        }

        /// State read back from `bytes`. Throws `invalidPartial` for a short or over-long buffer, a wrong magic or
        /// version, an unknown kind, axis or flag, dimensions that are zero or too large, or a payload whose length
        /// does not match the header.
        public init(bytes: [UInt8]) throws(ImagingError) {
            guard bytes.count >= Self.headerSize else {
                throw .invalidPartial("\(bytes.count) bytes, shorter than the \(Self.headerSize)-byte header")
            }
            guard Array(bytes[0..<4]) == Self.magic else { throw .invalidPartial("not a projection partial (bad magic)") }
            guard bytes[4] == Self.version else { throw .invalidPartial("partial version \(bytes[4]), expected \(Self.version)") }
            guard let kind = Kind(code: bytes[5]) else { throw .invalidPartial("unknown projection kind \(bytes[5])") }
            guard bytes[7] <= 1 else { throw .invalidPartial("unknown flags \(bytes[7])") }
            let (rows, columns, count) = bytes.withUnsafeBytes { raw in
                (
                    UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                    UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                    UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
                )
            }
            guard let r = Int(exactly: rows), let c = Int(exactly: columns), let n = Int(exactly: count) else {
                throw .invalidPartial("dimensions \(rows)×\(columns), \(count) slices do not fit")
            }
            let axis = Int(bytes[6])
            let (sumCount, valueCount) = try Self.payload(kind: kind, axis: axis, rows: r, columns: c, sliceCount: n)
            let payload = bytes.count - Self.headerSize
            guard payload == sumCount * 8 + valueCount * 4 else {
                throw .invalidPartial("\(payload) payload bytes, the header implies \(sumCount * 8 + valueCount * 4)")
            }
            let exact = bytes[7] == 1
            if kind != .sum, !exact { throw .invalidPartial("an inexact \(kind)") }
            var sums: [Double] = []
            var values: [Float] = []
            bytes.withUnsafeBytes { raw in
                let start = Self.headerSize
                sums = [Double](unsafeUninitializedCapacity: sumCount) { buffer, initialized in
                    for i in 0..<sumCount {
                        buffer[i] = Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: start + 8 * i, as: UInt64.self)))
                    }
                    initialized = sumCount
                }
                values = [Float](unsafeUninitializedCapacity: valueCount) { buffer, initialized in
                    for i in 0..<valueCount {
                        buffer[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start + 4 * i, as: UInt32.self)))
                    }
                    initialized = valueCount
                }
            }
            self.init(kind: kind, axis: axis, rows: r, columns: c, sliceCount: n, sums: sums, values: values, exact: exact)
        }

        /// Partials are equal when every field is, comparing values by bit pattern (so a NaN equals itself).
        public static func == (lhs: Self, rhs: Self) -> Bool {
            lhs.kind == rhs.kind && lhs.axis == rhs.axis && lhs.rows == rhs.rows && lhs.columns == rhs.columns
                && lhs.sliceCount == rhs.sliceCount && lhs.exact == rhs.exact
                && lhs.sums.elementsEqual(rhs.sums) { $0.bitPattern == $1.bitPattern }
                && lhs.values.elementsEqual(rhs.values) { $0.bitPattern == $1.bitPattern }
        }

        /// The number of Float64 sums and Float32 values the header implies; throws `invalidPartial` if it is inconsistent.
        static func payload(kind: Kind, axis: Int, rows: Int, columns: Int, sliceCount: Int) throws(ImagingError) -> (sums: Int, values: Int) {
            guard (0...2).contains(axis) else { throw .invalidPartial("projection axis \(axis)") }
            guard rows > 0, columns > 0, sliceCount >= 0, planeBytes(rows, columns) != nil else {
                throw .invalidPartial("\(rows)×\(columns) slices, \(sliceCount) of them")
            }
            if sliceCount == 0 { return (0, 0) }
            switch axis {
            case 0:
                return kind == .sum ? (rows * columns, 0) : (0, rows * columns)
            default:
                let (count, overflow) = sliceCount.multipliedReportingOverflow(by: axis == 1 ? columns : rows)
                guard !overflow, count <= Int.max / 8 else { throw .invalidPartial("\(sliceCount) slices of \(rows)×\(columns) do not fit") }
                return (0, count)
            }
        }

        /// Refuses a partial whose arrays do not match its header.
        static func validate(
            kind: Kind, axis: Int, rows: Int, columns: Int, sliceCount: Int, sums: Int, values: Int, exact: Bool
        ) throws(ImagingError) {
            let expected = try payload(kind: kind, axis: axis, rows: rows, columns: columns, sliceCount: sliceCount)
            guard expected == (sums, values) else {
                throw .invalidPartial("\(sums) sums and \(values) values where the header implies \(expected.sums) and \(expected.values)")
            }
            if kind != .sum, !exact { throw .invalidPartial("an inexact \(kind)") }
        }
    }
}

extension ProjectionAccumulator.Kind {
    /// The kind's byte in `Partial.bytes`.
    fileprivate var code: UInt8 {
        switch self {
        case .sum: 0
        case .maximum: 1
        case .minimum: 2
        }
    }

    fileprivate init?(code: UInt8) {
        switch code {
        case 0: self = .sum
        case 1: self = .maximum
        case 2: self = .minimum
        default: return nil
        }
    }
}

/// `rows × columns × 8` (the bytes of a Float64 plane), or nil if it overflows.
private func planeBytes(_ rows: Int, _ columns: Int) -> Int? {
    let (plane, overflow) = rows.multipliedReportingOverflow(by: columns)
    guard !overflow else { return nil }
    let (bytes, overflow8) = plane.multipliedReportingOverflow(by: 8)
    return overflow8 ? nil : bytes
}

// MARK: Kernels

/// A maximum or minimum that is exactly associative, NaN included: the running value `a` is kept when it is NaN
/// (so the first NaN, payload and all, sticks) or when `b` is strictly beyond it; otherwise `b` replaces it (so a
/// NaN `b` propagates, and of equal values, such as −0 and +0, the later is kept). Folding in any grouping, in order,
/// gives the same bits.
/// `acc[i] = combine(acc[i], x[i])` for `count` values, eight at a time.
@inline(__always)
private func foldExtrema<R: Reduction>(_ acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int, _: R.Type) {
    let whole = count & ~7
    let out = UnsafeMutableRawPointer(acc)
    let source = UnsafeRawPointer(x)
    var i = 0
    while i < whole {
        let offset = i * MemoryLayout<Float>.stride
        let a = out.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        let b = source.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        out.storeBytes(of: R.combine(a, b), toByteOffset: offset, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        acc[i] = R.combine(acc[i], x[i])
        i += 1
    }
}

/// `acc[i] = combine(acc[i], combine(x[i], y[i]))` for `count` values, eight at a time: the same bits as folding
/// `x` then `y`, since the rule is associative.
@inline(__always)
private func foldExtrema<R: Reduction>(
    _ acc: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int, _: R.Type
) {
    let whole = count & ~7
    let out = UnsafeMutableRawPointer(acc)
    let first = UnsafeRawPointer(x)
    let second = UnsafeRawPointer(y)
    var i = 0
    while i < whole {
        let offset = i * MemoryLayout<Float>.stride
        let a = out.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        let b = first.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        let c = second.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
        out.storeBytes(of: R.combine(a, R.combine(b, c)), toByteOffset: offset, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count {
        acc[i] = R.combine(acc[i], R.combine(x[i], y[i]))
        i += 1
    }
}

/// TwoSum on eight lanes: the rounded sum, and the rounding errors' bit patterns. An exact addition's error is +0
/// (all bits clear); a rounded one's is non-zero, and a NaN or infinite one's is NaN, so OR-ing the patterns and
/// testing for zero at the end finds any inexact lane without a comparison per addition.
@inline(__always)
private func twoSum(_ a: SIMD8<Double>, _ b: SIMD8<Double>) -> (sum: SIMD8<Double>, error: SIMD8<UInt64>) {
    let s = a + b
    let bb = s - a
    let error = (a - (s - bb)) + (b - bb)
    return (s, unsafeBitCast(error, to: SIMD8<UInt64>.self))
}

/// TwoSum on four lanes, as the eight-lane one; four lanes keep the two-slice kernels within the SSE registers.
@inline(__always)
private func twoSum(_ a: SIMD4<Double>, _ b: SIMD4<Double>) -> (sum: SIMD4<Double>, error: SIMD4<UInt64>) {
    let s = a + b
    let bb = s - a
    let error = (a - (s - bb)) + (b - bb)
    return (s, unsafeBitCast(error, to: SIMD4<UInt64>.self))
}

/// Scalar TwoSum: returns `a + b` and sets `inexact` if it rounded (or is NaN or infinite).
@inline(__always)
private func twoSum(_ a: Double, _ b: Double, _ inexact: inout Bool) -> Double {
    let s = a + b
    let bb = s - a
    let error = (a - (s - bb)) + (b - bb)
    if error != 0 { inexact = true }
    return s
}

/// `acc[i] += Double(x[i])` for `count` values, four at a time; returns whether any addition was inexact.
@inline(__always)
private func addFloats(_ acc: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Float>, count: Int) -> Bool {
    let whole = count & ~3
    let out = UnsafeMutableRawPointer(acc)
    let source = UnsafeRawPointer(x)
    var flags = SIMD4<UInt64>(repeating: 0)
    var i = 0
    while i < whole {
        let a = out.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
        let b = SIMD4<Double>(source.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self))
        let (s, error) = twoSum(a, b)
        flags |= error
        out.storeBytes(of: s, toByteOffset: i * 8, as: SIMD4<Double>.self)
        i += 4
    }
    var inexact = flags != .zero
    while i < count {
        acc[i] = twoSum(acc[i], Double(x[i]), &inexact)
        i += 1
    }
    return inexact
}

/// `acc[i] = (acc[i] + Double(x[i])) + Double(y[i])` for `count` values, four at a time: the same additions, in
/// the same order, as two passes; returns whether any was inexact.
@inline(__always)
private func addFloats(_ acc: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Bool {
    let whole = count & ~3
    let out = UnsafeMutableRawPointer(acc)
    let first = UnsafeRawPointer(x)
    let second = UnsafeRawPointer(y)
    var flags = SIMD4<UInt64>(repeating: 0)
    var i = 0
    while i < whole {
        let a = out.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
        let b = SIMD4<Double>(first.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self))
        let c = SIMD4<Double>(second.loadUnaligned(fromByteOffset: i * 4, as: SIMD4<Float>.self))
        let (s, error) = twoSum(a, b)
        let (t, errorToo) = twoSum(s, c)
        flags |= error | errorToo
        out.storeBytes(of: t, toByteOffset: i * 8, as: SIMD4<Double>.self)
        i += 4
    }
    var inexact = flags != .zero
    while i < count {
        acc[i] = twoSum(twoSum(acc[i], Double(x[i]), &inexact), Double(y[i]), &inexact)
        i += 1
    }
    return inexact
}

/// `acc[i] += x[i]` for `count` Float64 values, four at a time; returns whether any addition was inexact.
private func addSums(_ acc: UnsafeMutablePointer<Double>, _ x: UnsafePointer<Double>, count: Int) -> Bool {
    let whole = count & ~3
    let out = UnsafeMutableRawPointer(acc)
    let source = UnsafeRawPointer(x)
    var flags = SIMD4<UInt64>(repeating: 0)
    var i = 0
    while i < whole {
        let a = out.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
        let b = source.loadUnaligned(fromByteOffset: i * 8, as: SIMD4<Double>.self)
        let (s, error) = twoSum(a, b)
        flags |= error
        out.storeBytes(of: s, toByteOffset: i * 8, as: SIMD4<Double>.self)
        i += 4
    }
    var inexact = flags != .zero
    while i < count {
        acc[i] = twoSum(acc[i], x[i], &inexact)
        i += 1
    }
    return inexact
}

/// The Float64 sum of `count` contiguous values: eight independent lanes (two sets of four, so consecutive TwoSums
/// do not wait on each other), then the lanes and the tail in a fixed order; sets `inexact` if any addition rounded.
/// The order depends only on `count`, so every run sums a row the same way.
@inline(__always)
private func sumRow(_ row: UnsafePointer<Float>, count: Int, _ inexact: inout Bool) -> Double {
    let whole = count & ~7
    guard whole > 0 else {
        var result = Double(row[0])
        for i in 1..<max(count, 1) { result = twoSum(result, Double(row[i]), &inexact) }
        return result
    }
    let raw = UnsafeRawPointer(row)
    let stride = MemoryLayout<Float>.stride
    var even = SIMD4<Double>(raw.loadUnaligned(as: SIMD4<Float>.self))
    var odd = SIMD4<Double>(raw.loadUnaligned(fromByteOffset: 4 * stride, as: SIMD4<Float>.self))
    var flags = SIMD4<UInt64>(repeating: 0)
    var i = 8
    while i < whole {
        let (s, error) = twoSum(even, SIMD4<Double>(raw.loadUnaligned(fromByteOffset: i * stride, as: SIMD4<Float>.self)))
        let (t, errorToo) = twoSum(odd, SIMD4<Double>(raw.loadUnaligned(fromByteOffset: (i + 4) * stride, as: SIMD4<Float>.self)))
        even = s
        odd = t
        flags |= error | errorToo
        i += 8
    }
    let (lanes, error) = twoSum(even, odd)
    flags |= error
    if flags != .zero { inexact = true }
    var result = lanes[0]
    for lane in 1..<4 { result = twoSum(result, lanes[lane], &inexact) }
    while i < count {
        result = twoSum(result, Double(row[i]), &inexact)
        i += 1
    }
    return result
}
