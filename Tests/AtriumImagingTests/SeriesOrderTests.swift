import AtriumImaging
import Testing

@Suite("AtriumImaging series ordering: position along the normal, then instance number")
struct SeriesOrderTests {
    private static let axial: [Double] = [1, 0, 0, 0, 1, 0]

    private func slice(z: Double, instance: Int? = nil, orientation: [Double]? = axial) -> SliceGeometry {
        SliceGeometry(rows: 4, columns: 3, imagePosition: [-250, -250, z], imageOrientation: orientation, instanceNumber: instance)
    }

    @Test("reversed positions are put in ascending order along the normal")
    func reversedPositions() throws {
        let slices = [slice(z: 10, instance: 1), slice(z: 5, instance: 2), slice(z: 0, instance: 3), slice(z: -5, instance: 4)]
        #expect(try SeriesOrder.order(slices) == [3, 2, 1, 0])
    }

    @Test("an oblique orientation orders by the projection on its normal, not by z")
    func obliqueOrientation() throws {
        // Row cosines along x, column cosines in the y-z plane at 30° from y: the normal is (0, −sin 30°, cos 30°).
        let (sine, cosine) = (0.5, 0.75.squareRoot())
        let orientation = [1, 0, 0, 0, cosine, sine]
        let normal: [Double] = [0, -sine, cosine]
        // Positions along the normal at 2, 0, 1 mm, each shifted in-plane so that z alone would give another order.
        let inPlane: [Double] = [0, cosine, sine]
        func position(_ d: Double, shift: Double) -> [Double] {
            (0..<3).map { (normal[$0] * d) + (inPlane[$0] * shift) }
        }
        let slices = [
            SliceGeometry(rows: 2, columns: 2, imagePosition: position(2, shift: -10), imageOrientation: orientation, instanceNumber: 1),
            SliceGeometry(rows: 2, columns: 2, imagePosition: position(0, shift: 10), imageOrientation: orientation, instanceNumber: 2),
            SliceGeometry(rows: 2, columns: 2, imagePosition: position(1, shift: 0), imageOrientation: orientation, instanceNumber: 3),
        ]
        #expect(slices.indices.sorted { slices[$0].imagePosition![2] < slices[$1].imagePosition![2] } != [1, 2, 0])
        #expect(try SeriesOrder.order(slices) == [1, 2, 0])
    }

    @Test("equal positions are ordered by instance number (missing last), then by original index")
    func tiesByInstanceNumber() throws {
        let slices = [
            slice(z: 1, instance: 9), slice(z: 0, instance: 7), slice(z: 0, instance: nil), slice(z: 0, instance: 3),
            slice(z: 1 + 1e-9, instance: 2), slice(z: 0, instance: nil),
        ]
        #expect(try SeriesOrder.order(slices) == [3, 1, 2, 5, 4, 0])
    }

    @Test("slices of another size are refused, naming the slice")
    func sizeMismatch() {
        var slices = [slice(z: 0), slice(z: 1), slice(z: 2)]
        slices[2].columns = 5
        #expect { try SeriesOrder.order(slices) } throws: { error in
            guard let error = error as? ImagingError else { return false }
            return error.isSeriesMismatch && error.detail.contains("slice 2")
        }
    }

    @Test("slices of another orientation are refused; tiny differences are tolerated")
    func orientationMismatch() throws {
        let tilted = slice(z: 1, orientation: [1, 0, 0, 0, 0.999, 0.0447])
        #expect { try SeriesOrder.order([slice(z: 0), tilted]) } throws: { error in
            guard let error = error as? ImagingError else { return false }
            return error.isSeriesMismatch && error.detail.contains("slice 1")
        }
        #expect(throws: ImagingError.seriesMismatch("")) { try SeriesOrder.order([slice(z: 0), slice(z: 1, orientation: nil)]) }
        #expect(throws: ImagingError.seriesMismatch("")) { try SeriesOrder.order([slice(z: 0, orientation: nil), slice(z: 1)]) }
        let nearly = slice(z: -1, orientation: [1, 0, 0, 0, 1, 5e-5])
        #expect(try SeriesOrder.order([slice(z: 0), nearly]) == [1, 0])
    }

    @Test("without positions and orientations, slices are ordered by instance number, missing last")
    func noGeometry() throws {
        let slices = [
            SliceGeometry(rows: 2, columns: 2, instanceNumber: 3), SliceGeometry(rows: 2, columns: 2),
            SliceGeometry(rows: 2, columns: 2, instanceNumber: 1), SliceGeometry(rows: 2, columns: 2, instanceNumber: 2),
            SliceGeometry(rows: 2, columns: 2),
        ]
        #expect(try SeriesOrder.order(slices) == [2, 3, 0, 1, 4])
        // Positions without orientations cannot be projected and are ignored.
        let unoriented = [slice(z: 0, instance: 2, orientation: nil), slice(z: 1, instance: 1, orientation: nil)]
        #expect(try SeriesOrder.order(unoriented) == [1, 0])
    }

    @Test("mixed positions, empty series and malformed geometry are refused")
    func refusals() {
        var missing = slice(z: 1)
        missing.imagePosition = nil
        #expect(throws: ImagingError.seriesMismatch("")) { try SeriesOrder.order([slice(z: 0), missing]) }
        #expect(throws: ImagingError.invalidShape("")) { try SeriesOrder.order([]) }
        #expect(throws: ImagingError.invalidShape("")) { try SeriesOrder.order([SliceGeometry(rows: 0, columns: 2)]) }
        #expect(throws: ImagingError.invalidGeometry("")) {
            try SeriesOrder.order([SliceGeometry(rows: 2, columns: 2, imagePosition: [0, 0], imageOrientation: Self.axial)])
        }
        #expect(throws: ImagingError.invalidGeometry("")) {
            try SeriesOrder.order([SliceGeometry(rows: 2, columns: 2, imagePosition: [0, 0, .nan], imageOrientation: Self.axial)])
        }
        #expect(throws: ImagingError.invalidGeometry("")) {
            try SeriesOrder.order([SliceGeometry(rows: 2, columns: 2, imagePosition: [0, 0, 0], imageOrientation: [1, 0, 0, 1, 0, 0])])
        }
    }
}
