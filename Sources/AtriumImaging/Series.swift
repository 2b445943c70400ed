// Series ordering (ARCHITECTURE.md §6): a series is a stack of slices ordered by position (ImagePositionPatient
// projected on the slice normal), then by instance number; slices that differ in size or orientation are refused.

/// What ordering needs to know about one slice of a series: its size and, when the header has them, its
/// ImagePositionPatient, ImageOrientationPatient and InstanceNumber.
public struct SliceGeometry: Sendable, Equatable {
    /// Number of rows (height).
    public var rows: Int
    /// Number of columns (width).
    public var columns: Int
    /// ImagePositionPatient: the x, y, z of the first pixel's centre, in mm (three values), or nil if absent.
    public var imagePosition: [Double]?
    /// ImageOrientationPatient: the row direction cosines then the column direction cosines (six values), or nil if absent.
    public var imageOrientation: [Double]?
    /// InstanceNumber, or nil if absent.
    public var instanceNumber: Int?

    /// A slice's geometry; the values are checked when the series is ordered, not here.
    public init(rows: Int, columns: Int, imagePosition: [Double]? = nil, imageOrientation: [Double]? = nil, instanceNumber: Int? = nil) {
        self.rows = rows
        self.columns = columns
        self.imagePosition = imagePosition
        self.imageOrientation = imageOrientation
        self.instanceNumber = instanceNumber
    }
}

/// The order of a series' slices.
public enum SeriesOrder {
    /// Largest difference allowed between a direction cosine of a slice and the same cosine of slice 0.
    public static let orientationTolerance = 1e-4

    /// Relative tolerance under which two positions along the normal count as the same: adjacent sorted keys `a ≤ b`
    /// are tied when `b − a ≤ 1e-6 × max(1, |a|, |b|)` mm (a nanometre for positions within a metre of the origin),
    /// which absorbs the decimal rounding of DICOM DS values but never merges real slices, which are ≥ 1 µm apart.
    public static let positionTolerance = 1e-6

    /// The permutation that orders `slices`: `result[k]` is the index in `slices` of the k-th slice of the series.
    ///
    /// Every slice must have slice 0's rows and columns and, within `orientationTolerance` per cosine, its
    /// orientation (a slice with an orientation when slice 0 has none, or without one when slice 0 has one, differs);
    /// otherwise `seriesMismatch`, naming the first offending slice and what differs.
    ///
    /// When the slices carry orientations, the normal is `cross(rowCosines, columnCosines)` of slice 0, normalised,
    /// and each slice's key is `dot(imagePosition, normal)`: slices sort by ascending key (runs of keys tied under
    /// `positionTolerance` form one group), then by instance number (a missing one sorts last), then by their
    /// original index. Either every slice has a position or none does (`seriesMismatch` otherwise). When no slice
    /// has both a position and an orientation (positions without orientations cannot be projected and are
    /// ignored), slices sort by instance number, missing last, then by original index.
    ///
    /// Throws `invalidShape` for no slices or non-positive dimensions, and `invalidGeometry` for a position that is
    /// not three finite values, an orientation that is not six finite values, or row and column cosines that are
    /// parallel or zero.
    public static func order(_ slices: [SliceGeometry]) throws(ImagingError) -> [Int] {
        guard let first = slices.first else { throw .invalidShape("no slices in the series") }
        guard first.rows > 0, first.columns > 0 else { throw .invalidShape("slice 0 is \(first.rows)×\(first.columns)") }
        try checkGeometry(first, index: 0)
        for (index, slice) in slices.enumerated().dropFirst() {
            try checkGeometry(slice, index: index)
            guard slice.rows == first.rows, slice.columns == first.columns else {
                throw .seriesMismatch("slice \(index) is \(slice.rows)×\(slice.columns), slice 0 is \(first.rows)×\(first.columns)")
            }
            switch (first.imageOrientation, slice.imageOrientation) {
            case (nil, nil):
                break
            case (nil, .some):
                throw .seriesMismatch("slice \(index) has an orientation, slice 0 has none")
            case (.some, nil):
                throw .seriesMismatch("slice \(index) has no orientation, slice 0 has one")
            case let (reference?, orientation?):
                for k in 0..<6 where !(abs(orientation[k] - reference[k]) <= orientationTolerance) {
                    throw .seriesMismatch("slice \(index) orientation \(orientation) differs from slice 0's \(reference) in cosine \(k)")
                }
            }
        }

        let instanceOrder: (Int, Int) -> Bool = { a, b in
            switch (slices[a].instanceNumber, slices[b].instanceNumber) {
            case let (x?, y?) where x != y: x < y
            case (.some, nil): true
            case (nil, .some): false
            default: a < b
            }
        }

        guard let orientation = first.imageOrientation else {
            return slices.indices.sorted(by: instanceOrder)
        }
        let positioned = slices.count(where: { $0.imagePosition != nil })
        if positioned == 0 { return slices.indices.sorted(by: instanceOrder) }
        if positioned != slices.count {
            let index = slices.firstIndex { ($0.imagePosition == nil) != (first.imagePosition == nil) }!
            throw .seriesMismatch("slice \(index) \(first.imagePosition == nil ? "has" : "has no") position, slice 0 \(first.imagePosition == nil ? "has none" : "has one")")
        }

        // The normal of slice 0 (every orientation is within tolerance of it), normalised so keys are in mm.
        let (rx, ry, rz) = (orientation[0], orientation[1], orientation[2])
        let (cx, cy, cz) = (orientation[3], orientation[4], orientation[5])
        var normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
        let length = (normal.0 * normal.0 + normal.1 * normal.1 + normal.2 * normal.2).squareRoot()
        guard length > 1e-6 else { throw .invalidGeometry("slice 0 row and column cosines \(orientation) are parallel or zero") }
        normal = (normal.0 / length, normal.1 / length, normal.2 / length)
        let keys = slices.map { slice in
            let p = slice.imagePosition!
            return p[0] * normal.0 + p[1] * normal.1 + p[2] * normal.2
        }

        // Exact key order first; then runs of tied keys become groups ordered by instance number.
        var order = slices.indices.sorted { keys[$0] != keys[$1] ? keys[$0] < keys[$1] : $0 < $1 }
        var start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count, tied(keys[order[end - 1]], keys[order[end]]) { end += 1 }
            if end - start > 1 { order[start..<end].sort(by: instanceOrder) }
            start = end
        }
        return order
    }

    /// Whether two adjacent sorted keys are the same position under `positionTolerance`.
    private static func tied(_ a: Double, _ b: Double) -> Bool {
        b - a <= positionTolerance * max(1, abs(a), abs(b))
    }

    /// Refuses malformed dimensions, positions and orientations of one slice.
    private static func checkGeometry(_ slice: SliceGeometry, index: Int) throws(ImagingError) {
        guard slice.rows > 0, slice.columns > 0 else { throw .invalidShape("slice \(index) is \(slice.rows)×\(slice.columns)") }
        if let position = slice.imagePosition, position.count != 3 || !position.allSatisfy(\.isFinite) {
            throw .invalidGeometry("slice \(index) position \(position) is not three finite values")
        }
        if let orientation = slice.imageOrientation, orientation.count != 6 || !orientation.allSatisfy(\.isFinite) {
            throw .invalidGeometry("slice \(index) orientation \(orientation) is not six finite values")
        }
    }
}
