import AtriumImaging
import Testing

@Suite("AtriumImaging exact behaviour: integer conversion, shapes and errors")
struct ImagingExactTests {
    @Test("integer output rounds half away from zero")
    func roundsHalfAwayFromZero() throws {
        let image = try Image2D(rows: 1, columns: 8, pixels: [2.5, -2.5, 0.5, -0.5, 1.4999, -1.5001, 3.5, 0])
        #expect(image.samples(as: Int16.self) == [3, -3, 1, -1, 1, -2, 4, 0])
        #expect(image.samples(as: Int32.self) == [3, -3, 1, -1, 1, -2, 4, 0])
    }

    @Test("integer output clamps to the type's range, and NaN becomes 0")
    func clamps() throws {
        let image = try Image2D(rows: 1, columns: 6, pixels: [-0.6, -1000, 65534.6, 70000, -40000, .nan])
        #expect(image.samples(as: UInt16.self) == [0, 0, 65535, 65535, 0, 0])
        #expect(image.samples(as: Int16.self) == [-1, -1000, 32767, 32767, -32768, 0])
        #expect(image.samples(as: UInt8.self) == [0, 0, 255, 255, 0, 0])
        #expect(image.samples(as: Int8.self) == [-1, -128, 127, 127, -128, 0])
        let huge = try Image2D(rows: 1, columns: 4, pixels: [3e9, -3e9, 5e9, .infinity])
        #expect(huge.samples(as: Int32.self) == [.max, .min, .max, .max])
        #expect(huge.samples(as: UInt32.self) == [3_000_000_000, 0, .max, .max])
    }

    @Test("integer input goes through rescale slope and intercept, and back")
    func rescale() throws {
        let stored: [UInt16] = [0, 1, 1000, 4095]
        let image = try Image2D(rows: 2, columns: 2, samples: stored, slope: 2, intercept: -1024)
        #expect(image.pixels == [-1024, -1022, 976, 7166])
        #expect(image.samples(as: UInt16.self, slope: 2, intercept: -1024) == stored)
        #expect(image.samples(as: Int16.self) == [-1024, -1022, 976, 7166])
        let signed = try Image2D(rows: 1, columns: 3, samples: [Int32.min, 0, Int32.max])
        #expect(signed.pixels == [-2_147_483_648, 0, 2_147_483_648])
        let volume = try Volume(slices: 2, rows: 1, columns: 2, samples: [Int8(-128), 0, 1, 127], slope: 0.5)
        #expect(volume.voxels == [-64, 0, 0.5, 63.5])
        #expect(volume.samples(as: Int8.self, slope: 0.5) == [-128, 0, 1, 127])
    }

    @Test("add and subtract work pixelwise")
    func arithmetic() throws {
        let a = try Image2D(rows: 2, columns: 2, pixels: [1, 2, 3, 4])
        let b = try Image2D(rows: 2, columns: 2, pixels: [10, 20, 30, 40])
        #expect(try Image2D.add(a, b).pixels == [11, 22, 33, 44])
        #expect(try Image2D.subtract(a, b).pixels == [-9, -18, -27, -36])
    }

    @Test("stacking slices builds a volume whose slices come back unchanged")
    func stacking() throws {
        let a = try Image2D(rows: 2, columns: 3, pixels: [1, 2, 3, 4, 5, 6])
        let b = try Image2D(rows: 2, columns: 3, pixels: [7, 8, 9, 10, 11, 12])
        let volume = try Volume(stacking: [a, b])
        #expect(volume.slices == 2 && volume.rows == 2 && volume.columns == 3)
        #expect(volume.slice(1) == b)
        #expect(try volume.mip().pixels == b.pixels)
        #expect(try volume.minip().pixels == a.pixels)
        #expect(try volume.sumProjection(axis: 2).pixels == [6, 15, 24, 33])
    }

    @Test("shape mismatches are refused with shapeMismatch")
    func shapeMismatch() throws {
        let a = try Image2D(rows: 2, columns: 3)
        let b = try Image2D(rows: 3, columns: 2)
        #expect { try Image2D.add(a, b) } throws: { ($0 as? ImagingError)?.isShapeMismatch == true }
        #expect { try Image2D.subtract(a, b) } throws: { ($0 as? ImagingError)?.isShapeMismatch == true }
        #expect { try Volume(stacking: [a, b]) } throws: { ($0 as? ImagingError)?.isShapeMismatch == true }
    }

    @Test("invalid shapes are refused with invalidShape")
    func invalidShape() {
        #expect(throws: ImagingError.invalidShape("")) { try Image2D(rows: 2, columns: 2, pixels: [1, 2, 3]) }
        #expect(throws: ImagingError.invalidShape("")) { try Image2D(rows: 0, columns: 2, pixels: []) }
        #expect(throws: ImagingError.invalidShape("")) { try Image2D(rows: 2, columns: 2, samples: [UInt8(1)]) }
        #expect(throws: ImagingError.invalidShape("")) { try Volume(slices: 2, rows: 2, columns: 2, voxels: [1]) }
        #expect(throws: ImagingError.invalidShape("")) { try Volume(stacking: []) }
        #expect(throws: ImagingError.invalidShape("")) { try Image2D(rows: Int.max, columns: 2, repeating: 0) }
        #expect(throws: ImagingError.invalidShape("")) { try Volume(slices: Int.max / 2, rows: 2, columns: 3, voxels: []) }
    }

    @Test("bad sigmas, bands and axes are refused with their own codes")
    func parameterErrors() throws {
        let image = try Image2D(rows: 4, columns: 4, repeating: 1)
        #expect(throws: ImagingError.invalidSigma("")) { try image.smooth(sigma: -1) }
        #expect(throws: ImagingError.invalidSigma("")) { try image.smooth(sigma: .nan) }
        #expect(throws: ImagingError.invalidSigma("")) { try image.smooth(sigma: .infinity) }
        #expect(throws: ImagingError.invalidBand("")) { try image.bandpass(sigmaLow: 3, sigmaHigh: 1) }
        #expect(throws: ImagingError.invalidBand("")) { try image.bandpass(sigmaLow: 2, sigmaHigh: 2) }
        #expect(throws: ImagingError.invalidAxis("")) { try image.derivative(axis: 2) }
        let volume = try Volume(slices: 2, rows: 2, columns: 2, voxels: Array(repeating: 0, count: 8))
        #expect(throws: ImagingError.invalidAxis("")) { try volume.mip(axis: 3) }
        #expect(throws: ImagingError.invalidAxis("")) { try volume.sumProjection(axis: -1) }
        #expect(throws: ImagingError.invalidAxis("")) { try volume.minip(axis: 5) }
    }

    @Test("sigma 0 leaves the image unchanged")
    func sigmaZero() throws {
        let image = try Image2D(rows: 2, columns: 3, pixels: [1, -2, 3, 4, 5, 6])
        #expect(try image.smooth(sigma: 0) == image)
    }
}
