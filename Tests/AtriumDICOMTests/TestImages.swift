import Foundation

@testable import AtriumDICOM

/// Uncompressed images for tests, written with ``DICOMWriter`` and read back.
enum TestImage {
    /// An image of `samples` samples of `bits` bits a pixel (unsigned, all bits stored); `pixelData` holds the
    /// samples little endian, interleaved. `extra` elements are set last, so they may replace any of these.
    static func make(
        rows: Int,
        columns: Int,
        samples: Int = 1,
        bits: Int = 16,
        photometric: String = "MONOCHROME2",
        pixelData: [UInt8],
        extra: [(DICOMTag, VR, DICOMWriter.Value)] = []
    ) throws -> DICOMFile {
        var writer = DICOMWriter()
        try writer.set(.sopClassUID, .UI, .text("1.2.840.10008.5.1.4.1.1.7"))
        try writer.set(.sopInstanceUID, .UI, .text("2.25.7"))
        try writer.set(.samplesPerPixel, .US, .uint16([UInt16(samples)]))
        try writer.set(.photometricInterpretation, .CS, .text(photometric))
        try writer.set(.rows, .US, .uint16([UInt16(rows)]))
        try writer.set(.columns, .US, .uint16([UInt16(columns)]))
        try writer.set(.bitsAllocated, .US, .uint16([UInt16(bits)]))
        try writer.set(.bitsStored, .US, .uint16([UInt16(bits)]))
        try writer.set(.pixelRepresentation, .US, .uint16([0]))
        try writer.set(.pixelData, bits == 8 ? .OB : .OW, .bytes(pixelData))
        for (tag, vr, value) in extra { try writer.set(tag, vr, value) }
        return try DICOMReader.read(writer.partTen(implementationClassUID: "2.25.1"))
    }

    /// A 16-bit grey image of `values`, row-major, with, if given, its own window (centre, width), a rescale
    /// (slope, intercept), Pixel Spacing (`row\\column`) and Pixel Aspect Ratio (`vertical\\horizontal`).
    static func grey(
        rows: Int,
        columns: Int,
        values: [UInt16],
        photometric: String = "MONOCHROME2",
        window: (String, String)? = nil,
        rescale: (slope: String, intercept: String)? = nil,
        pixelSpacing: String? = nil,
        pixelAspectRatio: String? = nil,
        extra: [(DICOMTag, VR, DICOMWriter.Value)] = []
    ) throws -> DICOMFile {
        var elements: [(DICOMTag, VR, DICOMWriter.Value)] = []
        if let window { elements += [(.windowCenter, .DS, .text(window.0)), (.windowWidth, .DS, .text(window.1))] }
        if let rescale { elements += [(.rescaleSlope, .DS, .text(rescale.slope)), (.rescaleIntercept, .DS, .text(rescale.intercept))] }
        if let pixelSpacing { elements.append((.pixelSpacing, .DS, .text(pixelSpacing))) }
        if let pixelAspectRatio { elements.append((.pixelAspectRatio, .IS, .text(pixelAspectRatio))) }
        let bytes = values.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        return try make(rows: rows, columns: columns, photometric: photometric, pixelData: bytes, extra: elements + extra)
    }
}

/// Runs `python3 -c script arguments…` to completion: its exit status and its output (standard output and error).
func python(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try Python.run(["-c", script] + arguments)
}
